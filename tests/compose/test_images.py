"""
The switch between the stand-ins and the official images
(``SIGNUP_TEST_IMAGES``, tests/compose/images.py), and the testing page's table of
the images the project names. Only the failed-pull test needs an engine; it
pulls from a closed port on 127.0.0.1, never from a registry.
"""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from tests.compose import engine, images, swarm
from tests.support.ci import unavailable


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, images.STANDINS),
        ("", images.STANDINS),
        ("standins", images.STANDINS),
        ("official", images.OFFICIAL),
        (" Official\n", images.OFFICIAL),
    ],
)
def test_selection(value, expected):
    environ = {} if value is None else {"SIGNUP_TEST_IMAGES": value}
    assert images.selected(environ) == expected


def test_an_unknown_image_set_is_refused():
    with pytest.raises(images.UnknownImageSet) as caught:
        images.selected({"SIGNUP_TEST_IMAGES": "offical"})
    assert str(caught.value) == (
        "SIGNUP_TEST_IMAGES='offical' is not one of standins, official "
        "(unset, it means standins)"
    )


def compose_config(files):
    result = engine.compose(
        "config", "--format", "json", project="imagecheck", files=files, timeout=60
    )
    return json.loads(result.stdout)["services"]


def test_official_images_get_no_override():
    compose_file = engine.PROJECT_ROOT / "compose.yaml"
    official = images.compose_files(compose_file, selection=images.OFFICIAL)
    standins = images.compose_files(compose_file, selection=images.STANDINS)
    assert official == (compose_file,)
    assert standins == (compose_file, engine.STANDINS_OVERRIDE)

    assert compose_config(official)["db"]["image"] == "postgres:18"
    web = compose_config(official)["web"]
    assert "PYTHON_IMAGE" not in web["build"].get("args", {})
    assert compose_config(standins)["db"]["image"] == engine.STANDIN_IMAGES["postgres"]


def test_the_official_images_are_those_the_project_names():
    assert images.official_images() == ["postgres:18", "python:3.13-slim", "nginx:1.30"]


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (images.OFFICIAL, ["postgres:18", "python:3.13-slim", "nginx:1.30"]),
        (images.STANDINS, [engine.STANDIN_IMAGES[n] for n in images.BASE_NAMES]),
    ],
)
def test_what_runs_in_place_of_each_official_image(selection, expected):
    found = [images.image_for(name, selection) for name in images.BASE_NAMES]
    assert found == expected


def test_the_swarm_stack_gets_the_standins_override_only_with_the_standins(
    monkeypatch,
):
    monkeypatch.setenv("SIGNUP_TEST_IMAGES", "official")
    assert swarm.stack_files() == (swarm.STACK_FILE,)
    monkeypatch.setenv("SIGNUP_TEST_IMAGES", "standins")
    assert swarm.stack_files() == (swarm.STACK_FILE, swarm.STACK_STANDINS)


def test_the_official_run_pulls_and_never_builds(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        raise AssertionError("the official run must not debootstrap or build")

    monkeypatch.setattr(engine, "get_engine", lambda: engine.Engine())
    monkeypatch.setattr(engine, "ensure_base_image", refuse)
    monkeypatch.setattr(engine, "build_standins", refuse)
    monkeypatch.setattr(images, "pull", lambda names: calls.append(names) or {})

    eng, timings = images.prepare(images.OFFICIAL)
    assert calls == [["postgres:18", "python:3.13-slim", "nginx:1.30"]]
    assert set(timings) == {"engine"}
    assert not eng.started_here


def closed_loopback_port():
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def running_engine():
    """An engine that answers, without any images prepared."""
    try:
        eng = engine.get_engine()
    except engine.EngineUnavailable as exc:
        unavailable(f"Docker engine tests did not run: {exc}")
    yield eng
    eng.stop()


@pytest.mark.engine
@pytest.mark.usefixtures("running_engine")
def test_a_failed_pull_names_the_image_and_the_reason(monkeypatch):
    absent = f"127.0.0.1:{closed_loopback_port()}/signup-test/absent:never"
    monkeypatch.setattr(images, "official_images", lambda: [absent])

    with pytest.raises(images.PullFailed) as caught:
        images.prepare(images.OFFICIAL)
    message = str(caught.value)
    assert message.startswith(
        "SIGNUP_TEST_IMAGES=official runs the official images, but "
        f"docker pull {absent} failed (no registry reachable?): "
    )
    assert "connection refused" in message
    # An EngineUnavailable: the docker_engine fixture fails with this message
    # in CI, and skips with it elsewhere.
    assert isinstance(caught.value, engine.EngineUnavailable)


def test_official_images_deselect_the_standin_tests():
    def collect(selection):
        result = subprocess.run(
            [
                *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider"),
                *("--collect-only", "-q", "tests/compose/test_standins.py"),
            ],
            cwd=engine.PROJECT_ROOT,
            env={**os.environ, "SIGNUP_TEST_IMAGES": selection},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return result.stdout + result.stderr

    assert "test_postgres_file_variants" in collect("standins")
    with_official = collect("official")
    assert "test_postgres_file_variants" not in with_official
    assert "deselected" in with_official


def test_the_testing_page_names_the_images_the_project_names():
    assert list(images.documented_versions()) == images.official_images()


def test_the_compose_tests_run_the_python_minor_version_of_the_web_image():
    python_image = next(
        image for image in images.official_images() if image.startswith("python:")
    )
    minor = re.match(r"python:(\d+\.\d+)", python_image)[1]
    assert images.documented_versions()[python_image] == f"Python {minor}"


def test_the_standins_are_built_from_the_named_debian_release():
    suite = engine.DEBIAN_SUITE
    assert f"debian:{suite}-slim" == engine.BASE_IMAGE
    for name, tag in engine.STANDIN_IMAGES.items():
        assert tag == f"signup-standin/{name}:{suite}"
        dockerfile = (engine.STANDINS_DIR / name / "Dockerfile").read_text()
        bases = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
        assert bases == [engine.BASE_IMAGE], name
    override = engine.STANDINS_OVERRIDE.read_text()
    named = set(re.findall(r"signup-standin/\w+:\S+", override))
    assert named == set(engine.STANDIN_IMAGES.values())
