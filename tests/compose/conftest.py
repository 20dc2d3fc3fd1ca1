"""
Fixtures for the tests that drive a real Docker engine and Compose v2.

``docker_engine`` (session): an engine that answers (dockerd started here if
needed, and stopped again by pid) and the images ``SIGNUP_TEST_IMAGES``
selects (``tests/compose/images.py``): by default the offline Debian base and
the stand-in images; with ``official``, the official images, pulled. When any
of that is missing the engine tests fail under CI=true (CI must not silently
skip them) and are skipped elsewhere, with the reason. A value of
``SIGNUP_TEST_IMAGES`` that names no image set fails them everywhere.

With the official images, the tests of the stand-ins themselves (marker
``standins``) are deselected: there are no stand-ins to test.
"""

import os
import time
import uuid
from pathlib import Path

import pytest

from tests.compose import engine, images, registry
from tests.support.ci import unavailable

HERE = Path(__file__).resolve().parent

# The first engine test also pays for the session setup (a cold one
# debootstraps and builds three images); it gets this much on top of its
# usual timeout.
ENGINE_SETUP_SECONDS = 900

RUN_PREFIX = f"signuptest{os.getpid()}{uuid.uuid4().hex[:6]}"
_setup_report = {}
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
    for item in items:
        if item.get_closest_marker("engine") and HERE in item.path.parents:
            marker = item.get_closest_marker("timeout")
            if marker and marker.args:
                usual = float(marker.args[0])
            else:
                usual = float(config.getini("timeout") or 0)
            if usual > 0:
                item.add_marker(
                    pytest.mark.timeout(usual + ENGINE_SETUP_SECONDS), append=False
                )
            break


def pytest_terminal_summary(terminalreporter):
    for line in _measured:
        terminalreporter.write_line(line)
    if _setup_report:
        parts = ", ".join(f"{k} {v} s" for k, v in _setup_report["seconds"].items())
        terminalreporter.write_line(
            f"docker engine setup ({_setup_report['engine']}, "
            f"{images.VARIABLE}={_setup_report['images']}): {parts}"
        )


@pytest.fixture(scope="session")
def docker_engine():
    """The engine (an ``engine.Engine``), with the selected images."""
    selection = _selected_images()
    started = time.monotonic()
    try:
        eng, timings = images.prepare(selection)
    except engine.EngineUnavailable as exc:
        _engine_unavailable(str(exc))
    timings["total"] = round(time.monotonic() - started, 1)
    _setup_report["seconds"] = timings
    _setup_report["images"] = selection
    _setup_report["engine"] = (
        f"dockerd pid {eng.process.pid} started here"
        if eng.started_here
        else "engine already running"
    )
    yield eng
    engine.remove_test_images()
    eng.stop()


@pytest.fixture(scope="session")
def smtp_server_image(docker_engine):
    """The test SMTP server's image name, built for the tests that mail."""
    try:
        timings = images.prepare_smtp_server(_selected_images())
    except engine.EngineUnavailable as exc:
        _engine_unavailable(str(exc))
    _setup_report["seconds"].update(timings)
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
