import pytest

from loopback.postgres import ThrowawayCluster
from tests.support.commands import OWNER_PASSWORD, OWNER_USERNAME
from tests.support.smtp import smtp_server  # noqa: F401 (for every layer's tests)


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
