"""Read-your-writes on every worker of a real gunicorn (docs/api.md §3 and §7)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.tenants import episode, fresh_client, unique_slug

pytestmark = pytest.mark.e2e
DIM = 16


@pytest.fixture
def tenant_key(memcloud_server):
    return memcloud_server.create_tenant(unique_slug(), "--dim", str(DIM))


def query_ids(client, vector, **flt) -> list[str]:
    r = client.post("/v1/query", json={"query_embedding": vector, "top_k": 1000, **flt})
    assert r.status_code == 200, r.text
    return [h["id"] for h in r.json()["episodes"]]


def test_every_store_is_seen_by_the_next_query_on_any_worker(memcloud_server, tenant_key):
    rng = np.random.default_rng(11)
    with fresh_client(memcloud_server.url, tenant_key) as client:
        stored = []
        for i in range(60):
            body = episode(DIM, rng, tags=[f"round{i}"])
            r = client.post("/v1/episodes", json=body)
            assert r.status_code == 201, r.text
            stored.append(r.json()["id"])
            # A fresh connection: whichever worker answers must already see the write.
            assert query_ids(client, body["state_embedding"], tags_all=[f"round{i}"]) == [stored[-1]]
        assert sorted(query_ids(client, rng.normal(size=DIM).tolist())) == sorted(stored)
        for eid in stored[:20]:
            assert client.delete(f"/v1/episodes/{eid}").status_code == 200
            assert eid not in query_ids(client, rng.normal(size=DIM).tolist())
        assert sorted(query_ids(client, rng.normal(size=DIM).tolist())) == sorted(stored[20:])


def test_prunes_reach_every_worker(memcloud_server, tenant_key):
    rng = np.random.default_rng(12)
    with fresh_client(memcloud_server.url, tenant_key) as client:
        ids = client.post("/v1/episodes/batch", json={"episodes": [
            episode(DIM, rng, timestamp=t, reward=float(t % 5)) for t in range(100)]}).json()["ids"]
        for _ in range(3):  # warm every worker's cache before the prunes
            assert len(query_ids(client, rng.normal(size=DIM).tolist())) == 100
        assert client.post("/v1/prune/older-than", json={"timestamp_cutoff_ms": 30}).json() == {"removed": 30}
        for _ in range(4):
            assert sorted(query_ids(client, rng.normal(size=DIM).tolist())) == sorted(ids[30:])
        assert client.post("/v1/prune/keep-highest-reward", json={"n": 20}).json() == {"removed": 50}
        for _ in range(4):
            assert len(query_ids(client, rng.normal(size=DIM).tolist())) == 20
        assert client.post("/v1/prune/keep-newest", json={"n": 5}).json() == {"removed": 15}
        for _ in range(4):
            assert len(query_ids(client, rng.normal(size=DIM).tolist())) == 5
        assert client.post("/v1/prune/keep-newest", json={"n": 0}).json() == {"removed": 5}
        for _ in range(4):
            assert query_ids(client, rng.normal(size=DIM).tolist()) == []


def test_bulk_removal_rebuilds_every_worker(memcloud_server, tenant_key):
    """A prune above the tombstone threshold bumps the generation; caches must rebuild."""
    from episodes.services import BULK_REMOVAL

    rng = np.random.default_rng(13)
    n = BULK_REMOVAL + 500
    with fresh_client(memcloud_server.url, tenant_key) as client:
        for start in range(0, n, 1000):
            size = min(1000, n - start)
            r = client.post("/v1/episodes/batch", json={"episodes": [
                episode(DIM, rng, timestamp=start + i) for i in range(size)]})
            assert r.status_code == 201
        for _ in range(3):
            assert len(query_ids(client, rng.normal(size=DIM).tolist())) == 1000
        assert client.post("/v1/prune/keep-newest", json={"n": 10}).json() == {"removed": n - 10}
        for _ in range(4):
            assert len(query_ids(client, rng.normal(size=DIM).tolist())) == 10
        r = client.post("/v1/episodes", json=episode(DIM, rng, timestamp=10**12))
        for _ in range(4):
            assert r.json()["id"] in query_ids(client, rng.normal(size=DIM).tolist())
