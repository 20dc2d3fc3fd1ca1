"""
The switch between the stand-ins and the official images
(``SIGNUP_TEST_IMAGES``, tests/compose/images.py), and the testing page's table of
the images the project names, and what .ci/prepare_images.py makes of them.
Two tests need an engine: the failed pull, from a closed port on 127.0.0.1
(never from a registry), and the check of the images the tests run.
"""

import importlib.util
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


def load_prepare_images():
    """.ci/prepare_images.py as a module (a script, in no package)."""
    path = engine.PROJECT_ROOT / ".ci" / "prepare_images.py"
    spec = importlib.util.spec_from_file_location("prepare_images", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (
            images.OFFICIAL,
            [
                "pull postgres:18",
                "pull python:3.13-slim",
                "pull nginx:1.30",
                "pull debian:trixie-slim",
                "build signup-standin/smtp:trixie",
            ],
        ),
        (
            images.STANDINS,
            [
                "debootstrap debian:trixie-slim",
                "build signup-standin/postgres:trixie",
                "build signup-standin/nginx:trixie",
                "build signup-standin/python:trixie",
                "build signup-standin/smtp:trixie",
            ],
        ),
    ],
)
def test_what_prepare_images_does_for_each_image_set(monkeypatch, selection, expected):
    """The official run pulls and never debootstraps or builds a stand-in; the
    stand-ins' run pulls nothing. Here on an engine with no image at all."""
    prepare = load_prepare_images()
    monkeypatch.setattr(engine, "image_exists", lambda image: False)

    assert [what for what, _ in prepare.steps(selection)] == expected


def test_prepare_images_makes_what_the_tests_need(monkeypatch):
    """What the script makes covers every image the tests check for."""
    prepare = load_prepare_images()
    monkeypatch.setattr(engine, "image_exists", lambda image: False)
    for selection in images.CHOICES:
        made = {what.split()[-1] for what, _ in prepare.steps(selection)}
        assert set(images.needed(selection)) <= made, selection


def closed_loopback_port():
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def running_engine():
    """An engine that answers, whatever images it holds."""
    try:
        return engine.require_engine()
    except engine.EngineUnavailable as exc:
        unavailable(f"Docker engine tests did not run: {exc}")


@pytest.mark.engine
@pytest.mark.usefixtures("running_engine")
def test_a_failed_pull_names_the_image_and_the_reason():
    prepare = load_prepare_images()
    absent = f"127.0.0.1:{closed_loopback_port()}/signup-test/absent:never"

    with pytest.raises(prepare.SetupFailed) as caught:
        prepare.pull(absent)
    message = str(caught.value)
    assert message.startswith(
        "SIGNUP_TEST_IMAGES=official runs the official images, but "
        f"docker pull {absent} failed (no registry reachable?): "
    )
    assert "connection refused" in message


@pytest.mark.engine
def test_an_absent_or_outdated_standin_is_a_problem(monkeypatch, docker_names):
    """The tests run no stand-in built from other files than the ones here."""
    digest = engine.context_digest("smtp")
    current, outdated = docker_names.image("current"), docker_names.image("outdated")
    absent = docker_names.image("absent")
    for image, label in ((current, digest), (outdated, "0" * 64)):
        engine.docker(
            *("build", "--tag", image, "--label", f"{engine.CONTEXT_LABEL}={label}"),
            "-",
            input="FROM scratch\nLABEL purpose=test\n",
        )
    needed = {current: "smtp", outdated: "smtp", absent: "smtp"}
    monkeypatch.setattr(images, "needed", lambda selection=None: needed)

    assert images.problems() == [
        f"{outdated} was built from other files than "
        "tests/compose/standins/smtp holds now",
        f"{absent} is absent",
    ]


def test_a_standins_digest_follows_its_files(monkeypatch, tmp_path):
    monkeypatch.setattr(engine, "STANDINS_DIR", tmp_path)
    (tmp_path / "smtp").mkdir()
    dockerfile = tmp_path / "smtp" / "Dockerfile"
    dockerfile.write_text("FROM debian:trixie-slim\n")
    digests = [engine.context_digest("smtp")]
    (tmp_path / "smtp" / "serve.sh").write_text("#!/bin/sh\n")
    digests.append(engine.context_digest("smtp"))
    (tmp_path / "smtp" / "serve.sh").chmod(0o755)
    digests.append(engine.context_digest("smtp"))
    dockerfile.write_text("FROM debian:trixie-slim\nUSER nobody\n")
    digests.append(engine.context_digest("smtp"))

    assert len(set(digests)) == len(digests)
    assert engine.context_digest("smtp") == digests[-1]


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
