"""Prunes, snapshots, checkpoint, stats, health and readiness through the client."""

import pytest
from memcloud_client import NotFound, Snapshot, Stats, ValidationError

from .helpers import DIM, vec

pytestmark = pytest.mark.e2e

T0 = 1_700_000_000_000


@pytest.fixture
def six(client):
    return client.store_batch(
        {"task_id": f"p{i}", "state_embedding": vec(i), "reward": [0.5, 0.9, 0.1, 0.7, 0.3, 0.8][i],
         "timestamp": T0 + i * 1000}
        for i in range(6)
    )


def remaining(client):
    return sorted(h.task_id for h in client.query(vec(0), top_k=100))


def test_prune_older_than(client, six):
    assert client.prune_older_than(T0 + 2000) == 2
    assert remaining(client) == ["p2", "p3", "p4", "p5"]


def test_prune_keep_newest(client, six):
    assert client.prune_keep_newest(2) == 4
    assert remaining(client) == ["p4", "p5"]


def test_prune_keep_highest_reward(client, six):
    assert client.prune_keep_highest_reward(3) == 3
    assert remaining(client) == ["p1", "p3", "p5"]


def test_prunes_of_an_empty_tenant_remove_nothing(client):
    assert client.prune_keep_newest(0) == 0
    assert client.prune_older_than(T0) == 0


@pytest.mark.needs("snapshots")
def test_save_list_load_round_trip(client, six):
    assert client.save("before-prune") == 6
    client.prune_keep_newest(0)
    snapshots = client.list_snapshots()
    assert [s.path for s in snapshots] == ["before-prune"]
    assert isinstance(snapshots[0], Snapshot) and snapshots[0].episodes == 6 and snapshots[0].bytes > 0
    assert client.load("before-prune") == 6
    assert remaining(client) == [f"p{i}" for i in range(6)]


@pytest.mark.needs("snapshots")
def test_load_of_an_unknown_snapshot_is_not_found(client):
    with pytest.raises(NotFound):
        client.load("never-saved")


@pytest.mark.needs("snapshots")
def test_snapshot_names_that_are_paths_are_refused(client):
    with pytest.raises(ValidationError) as exc:
        client.save("../escape")
    assert "path" in exc.value.message


@pytest.mark.needs("checkpoint")
def test_checkpoint_counts_episodes(client, six):
    assert client.checkpoint() == 6


def test_stats_are_the_tenants_own(client, other_client, six):
    stats = client.stats()
    assert isinstance(stats, Stats)
    assert (stats.dim, stats.episodes) == (DIM, 6)
    assert stats.tenant != other_client.stats().tenant
    assert other_client.stats().episodes == 0


def test_health_and_ready(client):
    assert client.health() is True
    assert client.ready() is True
