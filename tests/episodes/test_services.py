"""episodes/services.py. The store's bookkeeping (docs/api.md §7 and §9): what one store changes in the
tenant's state and rows, for new episodes, idempotent retries, conflicts and quotas, on both insert paths
(one row: INSERT, skipping a known id; many rows: COPY on PostgreSQL). PATCH, batch delete, TTL and the
expiry service (docs/api.md §8)."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from django.core.management import call_command

from episodes.models import Episode, Tombstone
from episodes.services import episodes_expire, now_ms
from tenants.models import TenantState
from tests.episodes.bodies import ep, vec
from tests.episodes.helpers import client_for, listed, query_ids, store

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


# ----- PATCH /v1/episodes/{id} -----
@pytest.fixture
def client(api, tenant):
    return api.as_key(tenant[1])


@pytest.mark.usefixtures("no_sweep_from_requests")
def test_patch_changes_fields_and_the_index(client, tenant):
    eid = store(client, ep(tags=["old"], metadata={"a": 1, "b": {"c": 2}}, source="s", user_id="u"))[0]
    assert query_ids(client, tags_all=["old"]) == [eid]  # warm the cache first
    version = TenantState.objects.get(tenant=tenant[0]).version
    r = client.patch(f"/v1/episodes/{eid}", {"tags": ["new", "new", "x"], "reward": -2.5, "task_id": "task_z",
                                            "source": None, "user_id": "u9", "metadata_merge": {"b": 3, "d": 4}},
                     format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["id"] == eid and body["tags"] == ["new", "x"] and body["reward"] == -2.5
    assert body["metadata"] == {"a": 1, "b": 3, "d": 4} and body["source"] is None and body["user_id"] == "u9"
    assert body["state_embedding"] == vec(1.0) and body["task_id"] == "task_z"
    assert client.get(f"/v1/episodes/{eid}").json() == body
    assert TenantState.objects.get(tenant=tenant[0]).version == version + 1
    assert query_ids(client, tags_all=["old"]) == []
    assert query_ids(client, tags_all=["new"], min_reward=-3, task_id_prefix="task_z", user_id="u9") == [eid]
    assert query_ids(client, min_reward=0) == []
    assert listed(client, tags_any="new") == [eid]
    r = client.patch(f"/v1/episodes/{eid}", {"metadata": {"z": 1}}, format="json")
    assert r.json()["metadata"] == {"z": 1}


@pytest.mark.usefixtures("no_sweep_from_requests")
def test_patch_expiry_sets_and_clears(client):
    eid = store(client, ep(ttl_secs=3600))[0]
    assert client.get(f"/v1/episodes/{eid}").json()["expires_at"] > now_ms()
    assert client.patch(f"/v1/episodes/{eid}", {"expires_at": None}, format="json").json()["expires_at"] is None
    assert Episode.objects.get(id=eid).expires_at is None
    r = client.patch(f"/v1/episodes/{eid}", {"expires_at": 1}, format="json")
    assert r.status_code == 200 and r.json()["expires_at"] == 1
    assert query_ids(client) == [] and listed(client) == []
    assert client.get(f"/v1/episodes/{eid}").status_code == 404
    assert client.patch(f"/v1/episodes/{eid}", {"expires_at": None}, format="json").status_code == 404


@pytest.mark.usefixtures("no_sweep_from_requests")
@pytest.mark.parametrize(("body", "field"), [
    ({"state_embedding": vec(0.0, 1.0)}, "state_embedding"),
    ({"state_embedding": vec(0.0, 1.0), "reward": 5.0}, "state_embedding"),
    ({"id": str(uuid.uuid4())}, "id"),
    ({"timestamp": 5}, "timestamp"),
    ({"steps": []}, "steps"),
    ({"rewrd": 1.0}, "rewrd"),
    ({"reward": None}, "reward"),
    ({"reward": "1"}, "reward"),
    ({"tags": "x"}, "tags"),
    ({"task_id": ""}, "task_id"),
    ({"metadata": [1]}, "metadata"),
    ({"metadata": {"a": 1}, "metadata_merge": {"b": 2}}, "metadata_merge"),
    ({"expires_at": -1}, "expires_at"),
    ({"metadata": {"x": "y" * 70000}}, "metadata"),
    ({"metadata": {"x": "nul\u0000"}}, "metadata"),  # jsonb cannot hold it: a 400, not a database error
    ({"metadata_merge": {"nul\u0000": 1}}, "metadata_merge"),
])
def test_bad_patch_is_a_400_and_changes_nothing(client, tenant, body, field):
    eid = store(client, ep(metadata={"keep": True}, tags=["t"]))[0]
    before = client.get(f"/v1/episodes/{eid}").json()
    version = TenantState.objects.get(tenant=tenant[0]).version
    r = client.patch(f"/v1/episodes/{eid}", body, format="json")
    assert r.status_code == 400, r.content
    assert r.json()["error"].startswith(f"{field}:"), r.json()
    if field == "state_embedding":
        assert "store a new episode" in r.json()["error"]
    assert client.get(f"/v1/episodes/{eid}").json() == before
    assert TenantState.objects.get(tenant=tenant[0]).version == version


@pytest.mark.usefixtures("no_sweep_from_requests")
def test_patch_edge_cases(client, api, other_tenant):
    eid = store(client, ep(metadata={"k": "v" * 60000}))[0]
    r = client.patch(f"/v1/episodes/{eid}", {}, format="json")
    assert r.status_code == 400 and "at least one field" in r.json()["error"]
    r = client.patch(f"/v1/episodes/{eid}", {"metadata_merge": {"j": "w" * 10000}}, format="json")
    assert r.status_code == 400 and r.json()["error"].startswith("metadata_merge:")
    assert client.patch(f"/v1/episodes/{uuid.uuid4()}", {"reward": 1}, format="json").status_code == 404
    assert client.patch("/v1/episodes/not-a-uuid", {"reward": 1}, format="json").status_code == 404
    rival = client_for(other_tenant[1])
    assert rival.patch(f"/v1/episodes/{eid}", {"reward": 9}, format="json").status_code == 404
    assert client.get(f"/v1/episodes/{eid}").json()["reward"] == 1.0



# ----- POST /v1/episodes/delete -----
@pytest.mark.usefixtures("no_sweep_from_requests")
def test_delete_by_ids_and_by_filter(client, api, other_tenant, tenant):
    ids = store(client, *[ep(tags=["a"] if i % 2 else ["b"], reward=float(i), timestamp=i) for i in range(10)])
    rival = client_for(other_tenant[1])
    rival_ids = store(rival, ep(tags=["a"]))
    assert query_ids(client) and len(query_ids(client)) == 10  # warm the cache
    r = client.post("/v1/episodes/delete", {"ids": [ids[0], ids[1], rival_ids[0], str(uuid.uuid4())]}, format="json")
    assert r.json() == {"removed": 2}
    assert Tombstone.objects.filter(tenant=tenant[0]).count() == 2
    r = client.post("/v1/episodes/delete", {"filter": {"tags_all": ["a"], "min_reward": 5}}, format="json")
    assert r.json() == {"removed": 3}  # 5, 7, 9
    assert sorted(query_ids(client)) == sorted([ids[i] for i in (2, 3, 4, 6, 8)])
    assert listed(client) == [ids[i] for i in (8, 6, 4, 3, 2)]
    assert client.post("/v1/episodes/delete", {"filter": {"tags_any": ["zzz"]}}, format="json").json() == {
        "removed": 0}
    assert client.post("/v1/episodes/delete", {"ids": []}, format="json").json() == {"removed": 0}
    assert rival.get(f"/v1/episodes/{rival_ids[0]}").status_code == 200
    assert TenantState.objects.get(tenant=tenant[0]).episode_count == 5


@pytest.mark.usefixtures("no_sweep_from_requests")
@pytest.mark.parametrize(("body", "field"), [
    ({}, "non_field_errors"),
    ({"filter": {}}, "filter"),
    ({"filter": {"tags_any": [], "tags_all": []}}, "filter"),
    ({"filter": {"min_reward": None}}, "filter"),
    ({"ids": [], "filter": {"min_reward": 1}}, "non_field_errors"),
    ({"ids": ["nope"]}, "ids[0]"),
    ({"ids": [str(uuid.uuid4()), 5]}, "ids[1]"),
    ({"ids": "x"}, "ids"),
    ({"filter": {"topk": 1}}, "filter.topk"),
    ({"filter": {"min_reward": "1"}}, "filter.min_reward"),
    ({"filter": [1]}, "filter"),
    ({"idz": []}, "idz"),
])
def test_bad_delete_is_a_400_and_removes_nothing(client, body, field):
    store(client, ep(), ep())
    r = client.post("/v1/episodes/delete", body, format="json")
    assert r.status_code == 400, r.content
    error = r.json()["error"]
    if field == "non_field_errors":
        assert "either ids or filter" in error
    else:
        assert error.startswith(f"{field}:"), error
    if body.get("filter") == {}:
        assert "use a prune" in error
    assert len(listed(client)) == 2


@pytest.mark.usefixtures("no_sweep_from_requests")
def test_delete_batch_limit(client, settings):
    settings.AGENT_MEM_MAX_BATCH = 2
    r = client.post("/v1/episodes/delete", {"ids": [str(uuid.uuid4()) for _ in range(3)]}, format="json")
    assert r.status_code == 400 and r.json()["error"].startswith("ids:")



# ----- TTL and the expiry service -----
@pytest.mark.usefixtures("no_sweep_from_requests")
def test_ttl_expires_at_and_tenant_default(client, make_tenant, api):
    before = now_ms()
    a, b, c = store(client, ep(ttl_secs=60), ep(expires_at=before + 5000), ep())
    rows = {str(r.id): r.expires_at for r in Episode.objects.all()}
    assert before + 60_000 <= rows[a] <= now_ms() + 60_000
    assert rows[b] == before + 5000 and rows[c] is None
    r = client.post("/v1/episodes", ep(ttl_secs=5, expires_at=before), format="json")
    assert r.status_code == 400 and r.json()["error"].startswith("ttl_secs:")
    assert client.post("/v1/episodes", ep(ttl_secs=0), format="json").status_code == 400
    _, key = make_tenant("ttl-default", default_ttl_secs=30)
    other = client_for(key)
    d, e, f = store(other, ep(), ep(ttl_secs=5), ep(expires_at=7))
    rows = {str(r.id): r.expires_at for r in Episode.objects.filter(tenant__slug="ttl-default")}
    assert before + 30_000 <= rows[d] <= now_ms() + 30_000
    assert rows[e] <= now_ms() + 5000 and rows[f] == 7


@pytest.mark.usefixtures("no_sweep_from_requests")
def test_expired_episodes_vanish_at_once_and_the_sweep_removes_them(client, tenant, settings):
    keep = store(client, ep(tags=["t"]))[0]
    doomed = store(client, *[ep(tags=["t"], ttl_secs=1) for _ in range(3)])
    assert len(query_ids(client)) == 4  # cached with the expiring rows
    time.sleep(1.1)
    assert query_ids(client) == [keep] and query_ids(client, tags_any=["t"]) == [keep]
    assert listed(client) == [keep]
    assert all(client.get(f"/v1/episodes/{i}").status_code == 404 for i in doomed)
    assert client.get("/v1/stats").json()["episodes"] == 1
    assert Episode.objects.filter(tenant=tenant[0]).count() == 4  # still there until the sweep
    version = TenantState.objects.get(tenant=tenant[0]).version
    call_command("expire")
    assert list(Episode.objects.filter(tenant=tenant[0]).values_list("id", flat=True)) == [uuid.UUID(keep)]
    state = TenantState.objects.get(tenant=tenant[0])
    assert state.episode_count == 1 and state.version == version + 1
    assert set(Tombstone.objects.filter(tenant=tenant[0]).values_list("episode_id", flat=True)) == {
        uuid.UUID(i) for i in doomed}
    assert query_ids(client) == [keep]
    assert episodes_expire() == 0


@pytest.mark.usefixtures("no_sweep_from_requests")
def test_expire_works_in_bounded_chunks(client, tenant):
    store(client, *[ep(expires_at=1) for _ in range(25)], ep())
    assert episodes_expire(chunk=10, max_chunks=2) == 20
    assert episodes_expire(chunk=10) == 5
    assert Episode.objects.filter(tenant=tenant[0]).count() == 1

