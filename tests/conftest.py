import pytest

from tests.support.postgres import ThrowawayCluster


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
