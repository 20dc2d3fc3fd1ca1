"""
One rule for a component the tests need but the machine lacks (nginx, wrk,
envsubst, a Docker engine, Chromium): in CI (CI=true, 1 or yes) the test
fails with the reason, because CI must never pass by skipping; elsewhere it
is skipped with the reason, so a developer without Docker can still run the
rest.
"""

import os

import pytest


def running_in_ci():
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason, *, allow_module_level=False):
    """Fail (CI) or skip (elsewhere) with REASON."""
    if running_in_ci():
        pytest.fail(f"{reason} (CI is set, so this fails)", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)


def require_program(path, needed_for, package):
    """Fail (CI) or skip (elsewhere) unless PATH is an executable program."""
    if not os.access(path, os.X_OK):
        unavailable(
            f"{path} is missing: {needed_for} "
            f"(apt-get install {package}; .ci/run installs it)"
        )
