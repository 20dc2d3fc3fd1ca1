import os

import django
import pytest
from django.conf import settings

from loopback.postgres import ThrowawayCluster
from tests.support.commands import OWNER_PASSWORD, OWNER_USERNAME
from tests.support.smtp import smtp, smtp_server  # noqa: F401 (every layer's)

# The database when no TEST_POSTGRES_* variable says otherwise: the PostgreSQL
# every development and CI machine runs on 127.0.0.1:5432, trust authentication.
TEST_DATABASE = {
    "POSTGRES_HOST": "127.0.0.1",
    "POSTGRES_PORT": "5432",
    "POSTGRES_USER": "postgres",
    "POSTGRES_PASSWORD": "",
    "POSTGRES_DB": "signup",
}
TEST_KEY = "test-only-secret-key-" + "x" * 40
# What the caller's environment may hold that the suite must not use: another
# database, secret files, a mail server (no test mails a real one; the mail
# tests bring their own) and an admin account for `bootstrap` to make.
DROPPED = (
    "DATABASE_URL",
    "DJANGO_SECRET_KEY_FILE",
    "POSTGRES_PASSWORD_FILE",
    "EMAIL_URL",
    "EMAIL_URL_FILE",
    "DEFAULT_FROM_EMAIL",
)


def set_the_suite_environment():
    """The environment the in-process site reads its settings from. Debug is
    off and the key a test one, whatever the caller set."""
    dropped = [
        name
        for name in os.environ
        if name in DROPPED or name.startswith("DJANGO_SUPERUSER_")
    ]
    wanted = {n: os.environ.get(f"TEST_{n}", v) for n, v in TEST_DATABASE.items()}
    wanted |= {"DJANGO_SECRET_KEY": TEST_KEY, "DJANGO_DEBUG": "false"}
    # Loaded already (a pytest run of the suite's own inherits its environment):
    # only right if nothing here changes.
    if settings.configured and (
        dropped or any(os.environ.get(n) != v for n, v in wanted.items())
    ):
        raise pytest.UsageError(
            f"{settings.SETTINGS_MODULE} was loaded before the suite set its"
            " environment: unset DJANGO_SETTINGS_MODULE and run without --ds."
        )
    for name in dropped:
        del os.environ[name]
    os.environ.update(wanted)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")


# When pytest loads this file, first of the suite's: the conftests below it
# import the site's models, so Django is set up here, not by pytest-django
# (named in pyproject.toml, the settings would be loaded before this runs).
set_the_suite_environment()
django.setup()


@pytest.fixture
def owner(db):
    """The site's owner: a superuser, not logged in."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser(
        OWNER_USERNAME, "owner@example.com", OWNER_PASSWORD
    )


@pytest.fixture
def admin_client(client, owner):
    """The test client, logged in as the owner (replaces pytest-django's)."""
    client.force_login(owner)
    return client


@pytest.fixture
def throwaway_cluster():
    """A factory of private PostgreSQL servers, destroyed after the test."""
    clusters = []

    def make(**kwargs):
        cluster = ThrowawayCluster(**kwargs)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.destroy()
