"""The store service's bookkeeping (SPEC sections 7 and 9): what one store changes in the tenant's
state and rows, for new episodes, idempotent retries, conflicts and quotas, on both insert paths
(one row: INSERT, skipping a known id; many rows: COPY on PostgreSQL)."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from episodes.models import Episode
from tenants.models import TenantState
from tests.episodes.bodies import ep, vec

pytestmark = pytest.mark.django_db(transaction=True)


def state(tenant) -> tuple[int, int, int]:
    s = TenantState.objects.get(tenant=tenant)
    return s.version, s.next_seq, s.episode_count


def rows(tenant) -> list[tuple]:
    return list(Episode.objects.filter(tenant=tenant).order_by("seq").values_list("id", "seq", "version"))


@pytest.mark.parametrize("size", [3, 30])  # a multi-row INSERT, then COPY (on PostgreSQL)
def test_a_batch_with_retries_stamps_only_its_new_rows_with_consecutive_seqs(api, tenant, size):
    t, key = tenant
    client = api.as_key(key)
    known = [str(uuid.uuid4()) for _ in range(2)]
    assert client.post("/v1/episodes/batch", {"episodes": [ep(id=i) for i in known]}, format="json").status_code == 201
    assert state(t) == (1, 2, 2)
    fresh = [str(uuid.uuid4()) for _ in range(size)]
    batch = [ep(id=known[1]), *[ep(id=i, reward=2.0) for i in fresh[:-1]], ep(id=known[0]), ep(id=fresh[-1])]
    r = client.post("/v1/episodes/batch", {"episodes": batch}, format="json")
    assert r.status_code == 201 and r.json()["ids"] == [known[1], *fresh[:-1], known[0], fresh[-1]]
    assert state(t) == (2, 2 + size, 2 + size)
    assert [(str(i), s, v) for i, s, v in rows(t)] == \
        [(known[0], 0, 1), (known[1], 1, 1)] + [(i, 2 + n, 2) for n, i in enumerate(fresh)]
    again = client.post("/v1/episodes/batch", {"episodes": batch}, format="json")
    assert again.status_code == 200 and state(t) == (2, 2 + size, 2 + size)  # retries change nothing


def test_a_single_retry_changes_nothing_and_a_conflict_rolls_back(api, tenant):
    t, key = tenant
    client = api.as_key(key)
    eid = str(uuid.uuid4())
    assert client.post("/v1/episodes", ep(id=eid, tags=["a", "b"], timestamp=5), format="json").status_code == 201
    assert client.post("/v1/episodes", ep(), format="json").status_code == 201
    before = (state(t), rows(t))
    assert before[0] == (2, 2, 2)
    assert client.post("/v1/episodes", ep(id=eid, tags=["b", "a", "a"], timestamp=5.0), format="json").status_code \
        == 200
    for changed in (ep(id=eid, tags=["a"], timestamp=5), ep(id=eid, tags=["a", "b"]), ep(id=eid, tags=["a", "b"],
                    timestamp=5, state_embedding=vec(1.0, 1e-7))):
        r = client.post("/v1/episodes", changed, format="json")
        assert r.status_code == 409 and r.json()["error"].startswith("id: "), r.json()
    r = client.post("/v1/episodes/batch", {"episodes": [ep(), ep(id=eid)]}, format="json")
    assert r.status_code == 409 and r.json()["error"].startswith("episodes[1].id: ")
    assert (state(t), rows(t)) == before


def test_the_quota_counts_only_new_episodes(api, make_tenant):
    t, key = make_tenant("small", max_episodes=3)
    client = api.as_key(key)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    assert client.post("/v1/episodes/batch", {"episodes": [ep(id=ids[0]), ep(id=ids[1])]},
                       format="json").status_code == 201
    assert client.post("/v1/episodes/batch", {"episodes": [ep(id=i) for i in ids]}, format="json").status_code == 201
    assert state(t) == (2, 3, 3)
    assert client.post("/v1/episodes", ep(id=ids[2]), format="json").status_code == 200
    for body, path in ((ep(), "/v1/episodes"), ({"episodes": [ep(id=ids[0]), ep()]}, "/v1/episodes/batch")):
        r = client.post(path, body, format="json")
        assert r.status_code == 403 and "max_episodes" in r.json()["error"] and "(3 stored)" in r.json()["error"]
    assert state(t) == (2, 3, 3) and len(rows(t)) == 3


@pytest.mark.parametrize("path", ["/v1/episodes", "/v1/episodes/batch"])
def test_ttl_fields_set_expires_at(api, make_tenant, path):
    t, key = make_tenant("ttl", default_ttl_secs=60)
    client = api.as_key(key)
    bodies = [ep(task_id="default"), ep(task_id="ttl", ttl_secs=10), ep(task_id="at", expires_at=4_000_000_000_000),
              ep(task_id="null", expires_at=None)]
    started = time.time_ns() // 1_000_000
    if path == "/v1/episodes":
        for body in bodies:
            assert client.post(path, body, format="json").status_code == 201
    else:
        assert client.post(path, {"episodes": bodies}, format="json").status_code == 201
    ended = time.time_ns() // 1_000_000
    got = dict(Episode.objects.filter(tenant=t).values_list("task_id", "expires_at"))
    assert started + 60_000 <= got["default"] <= ended + 60_000
    assert started + 10_000 <= got["ttl"] <= ended + 10_000
    assert got["at"] == 4_000_000_000_000
    assert started + 60_000 <= got["null"] <= ended + 60_000


def test_stored_rows_hold_what_was_sent(api, tenant):
    t, key = tenant
    client = api.as_key(key)
    body = ep(task_id="tå", state_embedding=vec(0.1, -2.5, 3), reward=-1.5, metadata={"k": [1, {"z": None}]},
              timestamp=123, tags=["b", "a", "b"], source="s", user_id="u", steps=[{"a": 1}])
    for path, payload in (("/v1/episodes", body), ("/v1/episodes/batch", {"episodes": [body] * 25})):
        assert client.post(path, payload, format="json").status_code == 201
    assert Episode.objects.filter(tenant=t).count() == 26
    for row in Episode.objects.filter(tenant=t):
        assert (row.task_id, row.reward, row.metadata, row.timestamp, row.tags, row.source, row.user_id,
                row.steps, row.expires_at) == ("tå", -1.5, {"k": [1, {"z": None}]}, 123, ["b", "a"], "s", "u",
                                               [{"a": 1}], None)
        assert np.frombuffer(bytes(row.embedding), "<f4").tolist() == np.asarray(vec(0.1, -2.5, 3), np.float32).tolist()
