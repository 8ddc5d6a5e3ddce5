"""PUT /v1/episodes/{id} (docs/api.md §8.7): create or replace a whole episode atomically, and the
literal `task_id_prefix` filter the LangGraph store's namespaces rely on (both backends)."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest
from django.db import connection

from episodes.cache import IndexCache, cache
from episodes.models import Episode
from tenants.models import TenantState
from tests.episodes.bodies import ep, vec

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(api, tenant):
    return api.as_key(tenant[1])


def query(client, embedding: list[float], **flt) -> list[dict]:
    r = client.post("/v1/query", {"query_embedding": embedding, "top_k": 100, **flt}, format="json")
    assert r.status_code == 200, r.content
    return r.json()["episodes"]


def test_put_creates_then_replaces_every_field(client, tenant):
    eid = str(uuid.uuid4())
    r = client.put(f"/v1/episodes/{eid}", ep(metadata={"v": 1}, tags=["a"], ttl_secs=3600), format="json")
    assert r.status_code == 201 and r.json() == {"id": eid, "created": True}
    assert [h["id"] for h in query(client, vec(1.0), tags_all=["a"])] == [eid]  # warm the cache
    count = TenantState.objects.get(tenant=tenant[0]).episode_count
    r = client.put(f"/v1/episodes/{eid}", ep(task_id="other", state_embedding=vec(0.0, 1.0), reward=-1.0,
                                             metadata={"v": 2}, timestamp=5), format="json")
    assert r.status_code == 200 and r.json() == {"id": eid, "created": False}
    body = client.get(f"/v1/episodes/{eid}").json()
    assert body["metadata"] == {"v": 2} and body["tags"] == [] and body["task_id"] == "other"
    assert body["state_embedding"] == vec(0.0, 1.0) and body["reward"] == -1.0 and body["timestamp"] == 5
    assert body["expires_at"] is None
    assert TenantState.objects.get(tenant=tenant[0]).episode_count == count == 1
    # The cached index dropped the old embedding and filters and took the new ones.
    assert query(client, vec(1.0), tags_all=["a"]) == []
    hits = query(client, vec(0.0, 1.0))
    assert [h["id"] for h in hits] == [eid] and hits[0]["score"] == pytest.approx(1.0)
    assert client.get("/v1/stats").json()["episodes"] == 1


def test_a_replace_is_stored_anew_for_ordering(client):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    for eid in (first, second):
        assert client.put(f"/v1/episodes/{eid}", ep(), format="json").status_code == 201
    assert [e["id"] for e in client.get("/v1/episodes").json()["episodes"]] == [second, first]
    assert client.put(f"/v1/episodes/{first}", ep(reward=2.0), format="json").status_code == 200
    assert [e["id"] for e in client.get("/v1/episodes").json()["episodes"]] == [first, second]


def test_other_workers_see_the_replacement(client, tenant):
    """Another worker's cache (a second IndexCache, behind by one version) catches up to the new
    embedding: the replacement's tombstone and row carry the same version."""
    eid = str(uuid.uuid4())
    client.put(f"/v1/episodes/{eid}", ep(state_embedding=vec(1.0)), format="json")
    state = TenantState.objects.get(tenant=tenant[0])
    other = IndexCache(1 << 30)
    assert other.current(tenant[0], state).index.ids == [eid]
    client.put(f"/v1/episodes/{eid}", ep(state_embedding=vec(0.0, 1.0)), format="json")
    state = TenantState.objects.get(tenant=tenant[0])
    index = other.current(tenant[0], state).index
    assert index.ids == [eid]
    ids, scores = index.search(np.asarray(vec(0.0, 1.0), dtype=np.float32), 1)
    assert ids == [eid] and float(scores[0]) == pytest.approx(1.0)


def test_bad_put_is_a_400_or_404_and_changes_nothing(client, tenant):
    eid = str(uuid.uuid4())
    client.put(f"/v1/episodes/{eid}", ep(metadata={"keep": True}), format="json")
    version = TenantState.objects.get(tenant=tenant[0]).version
    for body, field in [({**ep(), "id": str(uuid.uuid4())}, "id"), (ep(state_embedding=[1.0]), "state_embedding"),
                        (ep(reward="x"), "reward"), ({"task_id": "t", "reward": 0.0}, "state_embedding")]:
        r = client.put(f"/v1/episodes/{eid}", body, format="json")
        assert r.status_code == 400 and field in r.json()["error"], r.content
    assert client.put("/v1/episodes/not-a-uuid", ep(), format="json").status_code == 404
    assert client.get(f"/v1/episodes/{eid}").json()["metadata"] == {"keep": True}
    assert TenantState.objects.get(tenant=tenant[0]).version == version
    assert client.put(f"/v1/episodes/{eid}", {**ep(), "id": eid}, format="json").status_code == 200


def test_put_respects_the_quota_only_when_creating(make_tenant, api):
    _, key = make_tenant("small", max_episodes=1)
    client = api.as_key(key)
    eid = str(uuid.uuid4())
    assert client.put(f"/v1/episodes/{eid}", ep(), format="json").status_code == 201
    assert client.put(f"/v1/episodes/{eid}", ep(reward=3.0), format="json").status_code == 200
    r = client.put(f"/v1/episodes/{uuid.uuid4()}", ep(), format="json")
    assert r.status_code == 403 and "max_episodes" in r.json()["error"]


def test_put_needs_the_write_scope(make_tenant, api):
    _, key = make_tenant("reader", scope="read")
    assert api.as_key(key).put(f"/v1/episodes/{uuid.uuid4()}", ep(), format="json").status_code == 403


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="concurrent transactions need PostgreSQL")
def test_concurrent_reads_see_old_or_new_never_nothing(tenant):
    """Readers in other connections while one writer replaces the episode over and over."""
    from rest_framework.test import APIClient

    def make() -> APIClient:
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant[1]}")
        return c

    eid = str(uuid.uuid4())
    assert make().put(f"/v1/episodes/{eid}", ep(metadata={"n": 0}), format="json").status_code == 201
    done, seen, bad = threading.Event(), [], []

    def read() -> None:
        reader = make()
        try:
            while not done.is_set():
                r = reader.get(f"/v1/episodes/{eid}")
                (seen if r.status_code == 200 else bad).append(r.status_code)
                hits = reader.post("/v1/query", {"query_embedding": vec(1.0), "top_k": 5}, format="json")
                if [h["id"] for h in hits.json()["episodes"]] != [eid]:
                    bad.append(hits.content)
        finally:
            connection.close()

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    writer = make()
    for n in range(1, 40):
        assert writer.put(f"/v1/episodes/{eid}", ep(metadata={"n": n}), format="json").status_code == 200
    done.set()
    for t in readers:
        t.join()
    assert not bad and seen
    assert Episode.objects.filter(id=eid).count() == 1


@pytest.mark.parametrize("label", ["%", "_", "*", "/", "a%b", "a_b"])
def test_task_id_prefix_is_literal(client, label):
    """`%` and `_` are LIKE wildcards on both databases: the prefix filter must not treat them so."""
    literal = f"t/{label}/"
    ids = {}
    for task in (f"{literal}k", "t/xx/k", "t/ab/k", "t/a/k", "T/%/k"):
        ids[task] = client.post("/v1/episodes", ep(task_id=task), format="json").json()["id"]
    listed = [e["task_id"] for e in client.get("/v1/episodes", {"task_id_prefix": literal}).json()["episodes"]]
    assert listed == [f"{literal}k"]
    hits = [h["task_id"] for h in query(client, vec(1.0), task_id_prefix=literal)]
    assert hits == [f"{literal}k"]
    cache.clear()  # and from a freshly built index
    assert [h["task_id"] for h in query(client, vec(1.0), task_id_prefix=literal)] == [f"{literal}k"]
    r = client.post("/v1/episodes/delete", {"filter": {"task_id_prefix": literal}}, format="json")
    assert r.json() == {"removed": 1}
