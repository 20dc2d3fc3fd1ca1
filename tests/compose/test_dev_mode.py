"""
Development mode (compose.dev.yaml) in a real Docker engine, on a copy of the
repository: debug is on, a change to a template shows without a rebuild, and
going back to the normal mode keeps the data.

Only `db` and `web` run (what `up web` starts): nothing publishes a host port.
The site is fetched from inside the web container. Where nginx would be
published is read from the merged configuration (`config`), which starts
nothing.
"""

import json
import time

import pytest

from tests.compose import engine, images
from tests.support.commands import site_environment

pytestmark = pytest.mark.engine

FETCH = (
    "import sys, urllib.request, urllib.error\n"
    "try:\n"
    "    page = urllib.request.urlopen('http://127.0.0.1:8000' + sys.argv[1])\n"
    "except urllib.error.HTTPError as error:\n"
    "    page = error\n"
    "print(page.status)\n"
    "print(page.read().decode())\n"
)


def fetch(project, path):
    """(status, body) of PATH, asked of the web container itself."""
    result = project("exec", "-T", "web", "python", "-c", FETCH, path)
    status, _, body = result.stdout.partition("\n")
    return int(status), body


def wait_for_text(project, path, text, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        status, body = fetch(project, path)
        if text in body:
            return status, body
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not on {path} after {timeout} s")
        time.sleep(1)


def published_nginx_addresses(**variables):
    """The host addresses compose.yaml + compose.dev.yaml publish nginx on."""
    env = site_environment(**variables)
    env.pop("DJANGO_SETTINGS_MODULE")
    result = engine.compose(
        *("config", "--format", "json"),
        project="signupdevconfig",
        files=(
            engine.PROJECT_ROOT / "compose.yaml",
            engine.PROJECT_ROOT / "compose.dev.yaml",
        ),
        env=env,
    )
    ports = json.loads(result.stdout)["services"]["nginx"]["ports"]
    return [(port["host_ip"], port["published"]) for port in ports]


def test_dev_mode_publishes_nginx_on_loopback_only():
    assert published_nginx_addresses() == [("127.0.0.1", "8080")]


def test_dev_mode_publishes_nginx_where_the_owner_asks():
    addresses = published_nginx_addresses(
        SIGNUP_BIND_ADDRESS="127.0.0.2", SIGNUP_PORT="8081"
    )

    assert addresses == [("127.0.0.2", "8081")]


def test_dev_mode_reloads_changes_has_debug_on_and_keeps_the_data(
    compose_project, tmp_path
):
    clone = engine.fresh_clone(tmp_path / "clone")
    env = site_environment()
    env.pop("DJANGO_SETTINGS_MODULE")
    dev = compose_project(
        clone / "compose.yaml",
        clone / "compose.dev.yaml",
        label="dev",
        env=env,
        cwd=clone,
    )
    up = ("up", "--build", "--detach", "--wait", "--wait-timeout", "300", "web")
    try:
        run_in_both_modes(dev, clone, env, up)
    finally:
        # Shown by pytest only if the test failed: why a service was unhealthy.
        logs = dev("logs", "--no-color", "--tail", "200", check=False)
        print(logs.stdout[-20000:])
        # The fixture's `down` leaves the image built here; it goes too.
        dev("down", "--volumes", "--rmi", "local", check=False, timeout=300)


def run_in_both_modes(dev, clone, env, up):
    dev(*up, timeout=1200)

    status, body = fetch(dev, "/")
    assert status == 200
    assert "Hello, please sign up!" in body
    # Debug on: a missing page explains itself.
    status, body = fetch(dev, "/no-such-page/")
    assert status == 404
    assert "Using the URLconf defined in" in body

    # A change in the working tree, no rebuild, no restart.
    template = clone / "accounts" / "templates" / "accounts" / "signup.html"
    template.write_text(
        template.read_text().replace("Hello, please sign up!", "Hello from dev mode!")
    )
    wait_for_text(dev, "/", "Hello from dev mode!")

    # Data made in dev mode is still there in the normal mode (same project,
    # same volumes), and debug is off again.
    dev(
        *("exec", "-T", "db", "psql", "-U", "signup", "-d", "signup", "-c"),
        "INSERT INTO accounts_signup (name, email) VALUES ('Dev', 'dev@example.com')",
    )
    normal = engine.ComposeProject(
        name=dev.name,
        files=images.compose_files(clone / "compose.yaml"),
        env=env,
        cwd=clone,
    )
    normal(*up, timeout=1200)
    count = normal(
        *("exec", "-T", "db", "psql", "-U", "signup", "-d", "signup", "-At", "-c"),
        "SELECT count(*) FROM accounts_signup WHERE email = 'dev@example.com'",
    )
    assert count.stdout.strip() == "1"
    status, body = fetch(normal, "/no-such-page/")
    assert status == 404
    assert "Using the URLconf defined in" not in body
