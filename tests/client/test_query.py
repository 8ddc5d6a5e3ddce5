"""Query with every filter through the client."""

from datetime import UTC, datetime

import pytest
from memcloud_client import QueryHit, ValidationError

from .helpers import near, vec

pytestmark = pytest.mark.e2e

T0 = 1_700_000_000_000


@pytest.fixture
def stored(client):
    """Five episodes around one direction, at known distances, rewards, tags, sources and times."""
    base = vec(100)
    rows = [
        ("task_a1", 0.10, 0.9, ["coding", "python"], "agent-a", "u1", T0),
        ("task_a2", 0.30, 0.2, ["coding"], "agent-a", "u2", T0 + 1000),
        ("task_b1", 0.60, 0.7, ["python"], "agent-b", "u1", T0 + 2000),
        ("other_1", 0.90, -0.5, ["cooking"], "agent-b", "u2", T0 + 3000),
        ("other_2", 1.50, 0.4, [], "agent-c", "u3", T0 + 4000),
    ]
    ids = {}
    for i, (task, dist, reward, tags, source, user, ts) in enumerate(rows):
        ids[task] = client.store(task, near(base, dist, i), reward, tags=tags, source=source, user_id=user, timestamp=ts)
    return base, ids


def tasks(hits):
    return [h.task_id for h in hits]


def test_query_returns_hits_best_first_with_scores(client, stored):
    base, ids = stored
    hits = client.query(base, top_k=5)
    assert all(isinstance(h, QueryHit) for h in hits)
    assert tasks(hits) == ["task_a1", "task_a2", "task_b1", "other_1", "other_2"]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert hits[0].id == ids["task_a1"] and hits[0].state_embedding is None


def test_top_k_and_include_embedding(client, stored):
    base, _ = stored
    hits = client.query(base, top_k=2, include_embedding=True)
    assert tasks(hits) == ["task_a1", "task_a2"]
    assert len(hits[0].state_embedding) == base.size


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"min_reward": 0.5}, ["task_a1", "task_b1"]),
        ({"min_reward": -1.0}, ["task_a1", "task_a2", "task_b1", "other_1", "other_2"]),
        ({"tags_any": ["python", "cooking"]}, ["task_a1", "task_b1", "other_1"]),
        ({"tags_all": ["coding", "python"]}, ["task_a1"]),
        ({"task_id_prefix": "task_"}, ["task_a1", "task_a2", "task_b1"]),
        ({"source": "agent-b"}, ["task_b1", "other_1"]),
        ({"user_id": "u2"}, ["task_a2", "other_1"]),
        ({"time_after": T0 + 1000, "time_before": T0 + 3000}, ["task_a2", "task_b1", "other_1"]),
        ({"source": "agent-a", "min_reward": 0.5}, ["task_a1"]),
    ],
)
def test_each_filter(client, stored, filters, expected):
    base, _ = stored
    assert tasks(client.query(base, top_k=10, **filters)) == expected


def test_times_may_be_datetimes(client, stored):
    base, _ = stored
    after = datetime.fromtimestamp((T0 + 2000) / 1000, tz=UTC)
    assert tasks(client.query(base, top_k=10, time_after=after)) == ["task_b1", "other_1", "other_2"]


def test_query_of_an_empty_tenant_is_empty(client):
    assert client.query(vec(1)) == []


def test_query_sees_only_its_own_tenant(client, other_client, stored):
    base, _ = stored
    assert other_client.query(base, top_k=10) == []


def test_unknown_filter_is_a_validation_error(client):
    with pytest.raises(ValidationError) as exc:
        client.query(vec(1), topk=3)  # type: ignore[call-arg]
    assert "topk" in exc.value.message
