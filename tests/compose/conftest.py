"""
Fixtures for the tests that drive a real Docker engine and Compose v2.

``docker_engine`` (session): an engine that answers, with the images
``SIGNUP_TEST_IMAGES`` selects (``tests/compose/images.py``): by default the
stand-in images, with ``official`` the official images, and the test SMTP
server either way. The tests make neither: ``.ci/start-docker`` starts the
engine and ``.ci/prepare_images.py`` makes the images, run by ``.ci/run`` or
once by hand. When either is missing the engine tests fail under CI=true (CI
must not silently skip them) and are skipped elsewhere, with the reason and
the script to run. A value of ``SIGNUP_TEST_IMAGES`` that names no image set
fails them everywhere.

With the official images, the tests of the stand-ins themselves (marker
``standins``) are deselected: there are no stand-ins to test.
"""

import os
import uuid
from pathlib import Path

import pytest

from tests.compose import engine, images, registry
from tests.support.ci import unavailable

RUN_PREFIX = f"signuptest{os.getpid()}{uuid.uuid4().hex[:6]}"
_measured = []


def _engine_unavailable(reason):
    unavailable(f"Docker engine tests did not run: {reason}")


def _selected_images():
    try:
        return images.selected()
    except images.UnknownImageSet as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    try:
        selection = images.selected()
    except images.UnknownImageSet:
        selection = None  # the docker_engine fixture fails with the reason
    if selection == images.OFFICIAL:
        standin_tests = [item for item in items if item.get_closest_marker("standins")]
        if standin_tests:
            config.hook.pytest_deselected(items=standin_tests)
            items[:] = [item for item in items if item not in standin_tests]


def pytest_terminal_summary(terminalreporter):
    for line in _measured:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def docker_engine():
    """The version of the engine that answers, with the selected images."""
    selection = _selected_images()
    try:
        version = engine.require_engine()
        engine.compose_binary()
        problems = images.problems(selection)
    except engine.EngineUnavailable as exc:
        _engine_unavailable(str(exc))
    if problems:
        _engine_unavailable(
            f"{'; '.join(problems)} (make the images with "
            f"{images.prepare_command(selection)})"
        )
    yield version
    engine.remove_test_images()


@pytest.fixture(scope="session")
def smtp_server_image(docker_engine):
    """The test SMTP server's image name (checked with the others)."""
    return engine.SMTP_IMAGE


@pytest.fixture(scope="session")
def run_prefix():
    """A prefix unique to this test run for names of Docker objects."""
    return RUN_PREFIX


@pytest.fixture
def docker_names(docker_engine, run_prefix):
    """Per-test unique Docker object names, removed by name after the test."""
    names = engine.DockerNames(f"{run_prefix}-{uuid.uuid4().hex[:6]}")
    yield names
    left = names.cleanup()
    assert not left, f"could not remove Docker objects: {left}"


@pytest.fixture
def compose_project(docker_engine, run_prefix):
    """Factory of Compose projects with unique names, each ``down -v``'d after.

    ``compose_project(*files, label=..., env=..., cwd=..., standins=True)``;
    FILES default to the project's compose.yaml, and the stand-ins override is
    layered on top when the stand-ins are selected, unless ``standins=False``
    (with the official images there is never an override). ENV is
    the complete environment Compose sees (default os.environ, which under
    pytest-django holds the test settings' POSTGRES_* values). Call the result with
    compose arguments: ``project("up", "--wait")``.
    """
    projects = []

    def make(*files, label="stack", env=None, cwd=None, standins=True):
        files = tuple(files) or (engine.PROJECT_ROOT / "compose.yaml",)
        if standins:
            files = images.compose_files(*files)
        project = engine.ComposeProject(
            name=f"{run_prefix}-{label}-{len(projects)}",
            files=tuple(Path(f) for f in files),
            env=env,
            cwd=cwd,
        )
        projects.append(project)
        return project

    yield make
    for project in reversed(projects):
        project.down()


@pytest.fixture(scope="session")
def loopback_registry(docker_engine):
    """A ``registry.LoopbackRegistry`` on 127.0.0.1, stopped by pid after."""
    try:
        reg = registry.LoopbackRegistry()
    except registry.RegistryUnavailable as exc:
        _engine_unavailable(str(exc))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def report_figure():
    """``report_figure(text)``: a measured figure, printed in the summary."""
    return _measured.append
