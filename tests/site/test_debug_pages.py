"""
Django's debug pages in development mode (DJANGO_DEBUG=true under runserver,
as compose.dev.yaml runs it) never show a secret: not in the settings, not in
request.META, which under runserver holds the whole environment.
"""

import pytest
import requests
from django.conf import settings

from loopback.processes import free_port, wait_for
from tests.support.commands import site_environment, start_manage

SECRET_KEY = "debug-page-secret-key-" + "s" * 40
DATABASE_PASSWORD = "debug-page-database-password"
ADMIN_PASSWORD = "debug-page-admin-password"
# The suite's server, reached with a password it does not check.
DATABASE = {
    key.lower(): settings.DATABASES["default"][key] for key in ("HOST", "PORT", "USER")
}


def database_by_pieces():
    return {
        "POSTGRES_HOST": DATABASE["host"],
        "POSTGRES_PORT": DATABASE["port"],
        "POSTGRES_USER": DATABASE["user"],
        "POSTGRES_DB": "postgres",
        "POSTGRES_PASSWORD": DATABASE_PASSWORD,
    }


def database_by_url():
    return {
        "DATABASE_URL": f"postgres://{DATABASE['user']}:{DATABASE_PASSWORD}"
        f"@{DATABASE['host']}:{DATABASE['port']}/postgres"
    }


@pytest.fixture(params=[database_by_pieces, database_by_url])
def development_server(request):
    """runserver with debug on, every secret set, a database password the
    (trust-authenticated) test server ignores; yields its base URL."""
    port = free_port()
    env = site_environment(
        DJANGO_SETTINGS_MODULE="tests.site.debug_site",
        DJANGO_DEBUG="true",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_SUPERUSER_USERNAME="owner",
        DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
        **request.param(),
    )
    server = start_manage("runserver", f"127.0.0.1:{port}", "--noreload", env=env)
    base = f"http://127.0.0.1:{port}"

    def answers():
        if server.poll() is not None:
            raise AssertionError(f"runserver exited: {server.communicate()}")
        try:
            requests.get(base + "/raise/", timeout=2)
        except requests.ConnectionError:
            return False
        return True

    try:
        wait_for(answers, timeout=30, message="runserver answering")
        yield base
    finally:
        server.terminate()
        server.communicate(timeout=10)


def assert_no_secret(body):
    shown = [s for s in (SECRET_KEY, DATABASE_PASSWORD, ADMIN_PASSWORD) if s in body]
    assert shown == []


def test_a_disallowed_host_shows_the_debug_page_without_secrets(development_server):
    response = requests.get(
        development_server + "/raise/", headers={"Host": "192.0.2.7"}, timeout=10
    )

    assert response.status_code == 400
    # The technical page, with its settings and META sections.
    assert "DisallowedHost" in response.text
    assert "BOOTSTRAP_SUPERUSER" in response.text
    assert_no_secret(response.text)


def test_a_failing_view_shows_the_debug_page_without_secrets(development_server):
    response = requests.get(development_server + "/raise/", timeout=10)

    assert response.status_code == 500
    assert "a view that fails" in response.text
    assert "BOOTSTRAP_SUPERUSER" in response.text
    assert "DJANGO_SUPERUSER_USERNAME" in response.text  # META is the environment
    assert_no_secret(response.text)
