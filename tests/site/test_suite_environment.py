"""
The suite's own environment (tests/conftest.py): whatever the caller's shell
holds, the in-process site runs with debug off, mails no real server, makes
no admin account and uses the database TEST_POSTGRES_* name.
"""

import os
import subprocess
import sys

from django.conf import settings

from tests.support.commands import PROJECT_ROOT

CALLER = {
    "DJANGO_DEBUG": "true",
    "EMAIL_URL": "smtp://mail.example.com:25",
    "DEFAULT_FROM_EMAIL": "someone@example.com",
    "DJANGO_SUPERUSER_USERNAME": "someone",
    "DATABASE_URL": "postgres://someone@db.example.com/production",
    "TEST_POSTGRES_DB": "signup_elsewhere",
}


def test_the_in_process_site_follows_the_suite_not_the_caller():
    assert settings.DEBUG is False
    assert settings.EMAIL_CONFIGURED is False
    assert settings.BOOTSTRAP_SUPERUSER is None
    database = settings.DATABASES["default"]
    assert database["HOST"] == os.environ.get("TEST_POSTGRES_HOST", "127.0.0.1")
    # test_…, once pytest-django has made the test database.
    name = database["NAME"].removeprefix("test_")
    assert name == os.environ.get("TEST_POSTGRES_DB", "signup")


def run_pytest(environment):
    """The test above in a pytest run of its own with ENVIRONMENT."""
    test = f"{__file__}::test_the_in_process_site_follows_the_suite_not_the_caller"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        env=environment,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_callers_settings_do_not_reach_the_suite():
    caller = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}

    result = run_pytest({**caller, **CALLER})

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_settings_loaded_before_the_suite_set_its_environment_stop_the_run():
    loaded_first = {"DJANGO_SETTINGS_MODULE": "tests.settings", "DJANGO_DEBUG": "true"}

    result = run_pytest({**os.environ, **loaded_first})

    assert result.returncode == 4, result.stdout + result.stderr
    assert "tests.settings was loaded before the suite set its environment" in (
        result.stderr
    )
