"""Keys and tenant isolation through a real server (docs/api.md §2)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.tenants import auth, episode, fresh_client, unique_slug

pytestmark = pytest.mark.e2e
DIM = 8


def test_tenant_a_never_sees_or_changes_tenant_b(memcloud_server):
    rng = np.random.default_rng(1)
    key_a = memcloud_server.create_tenant(unique_slug("a"), "--dim", str(DIM))
    key_b = memcloud_server.create_tenant(unique_slug("b"), "--dim", str(DIM))
    with fresh_client(memcloud_server.url, key_a) as a, fresh_client(memcloud_server.url, key_b) as b:
        ids_a = a.post("/v1/episodes/batch", json={"episodes": [episode(DIM, rng) for _ in range(5)]}).json()["ids"]
        for eid in ids_a:
            assert b.get(f"/v1/episodes/{eid}").status_code == 404
            assert b.delete(f"/v1/episodes/{eid}").status_code == 404
        assert b.post("/v1/query", json={"query_embedding": rng.normal(size=DIM).tolist(), "top_k": 100}).json() == {
            "episodes": []}
        assert b.get("/v1/stats").json()["episodes"] == 0
        assert b.post("/v1/prune/keep-newest", json={"n": 0}).json() == {"removed": 0}
        assert b.post("/v1/prune/older-than", json={"timestamp_cutoff_ms": 2**62}).json() == {"removed": 0}
        assert a.get("/v1/stats").json()["episodes"] == 5
        assert len(a.post("/v1/query", json={"query_embedding": rng.normal(size=DIM).tolist(),
                                             "top_k": 100}).json()["episodes"]) == 5


def test_missing_wrong_revoked_and_expired_keys_get_401(memcloud_server):
    import httpx

    slug = unique_slug()
    key = memcloud_server.create_tenant(slug, "--dim", str(DIM))
    url = f"{memcloud_server.url}/v1/stats"
    assert httpx.get(url, headers=auth(key)).status_code == 200
    assert httpx.get(url, headers={"X-API-Key": key}).status_code == 200
    for headers in ({}, auth(key[:-1] + ("A" if key[-1] != "A" else "B")), auth("mc_zzzzzzzz_" + "x" * 43),
                    auth("nonsense"), {"Authorization": f"Basic {key}"}, {"X-API-Key": key[:-2]}):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 401 and "error" in r.json(), headers
    other = memcloud_server.manage("issuekey", slug)
    both = httpx.get(url, headers={**auth(key), "X-API-Key": other})
    assert both.status_code == 401  # two different keys: refused, never the more lenient one
    memcloud_server.manage("revokekey", other[3:11])
    assert httpx.get(url, headers=auth(other)).status_code == 401
    expiring = memcloud_server.manage("issuekey", slug, "--expires-days", "0.00001")  # about a second
    import time

    time.sleep(1.2)
    assert httpx.get(url, headers=auth(expiring)).status_code == 401
    assert httpx.get(url, headers=auth(key)).status_code == 200


def test_queries_of_a_key_every_worker_has_verified_are_refused_once_it_is_revoked(memcloud_server):
    # Every worker has verified the key before it is revoked: the revocation holds on the very next
    # query whichever worker answers it (keys are checked against the database by every request).
    rng = np.random.default_rng(3)
    slug = unique_slug()
    admin = memcloud_server.create_tenant(slug, "--dim", str(DIM))
    reader = memcloud_server.manage("issuekey", slug, "--scope", "read")
    body = {"query_embedding": rng.normal(size=DIM).tolist(), "top_k": 3}
    with fresh_client(memcloud_server.url, admin) as a, fresh_client(memcloud_server.url, reader) as r:
        a.post("/v1/episodes/batch", json={"episodes": [episode(DIM, rng) for _ in range(5)]}).raise_for_status()
        for _ in range(12):  # new connections: spread over the 3 workers
            assert len(r.post("/v1/query", json=body).json()["episodes"]) == 3
            assert len(a.post("/v1/query", json=body).json()["episodes"]) == 3
        memcloud_server.manage("revokekey", reader[3:11])
        for _ in range(12):
            refused = r.post("/v1/query", json=body)
            assert refused.status_code == 401 and refused.json() == {"error": "API key has been revoked"}
            assert len(a.post("/v1/query", json=body).json()["episodes"]) == 3
        memcloud_server.manage("shell", "-c", f"from tenants.models import Tenant; "
                               f"Tenant.objects.filter(slug='{slug}').update(is_active=False)")
        for _ in range(12):
            refused = a.post("/v1/query", json=body)
            assert refused.status_code == 403 and "inactive" in refused.json()["error"]


def test_inactive_tenant_gets_403(memcloud_server):
    import httpx

    slug = unique_slug()
    key = memcloud_server.create_tenant(slug, "--dim", str(DIM))
    memcloud_server.manage("shell", "-c", f"from tenants.models import Tenant; Tenant.objects.filter(slug='{slug}')"
                       ".update(is_active=False)")
    r = httpx.get(f"{memcloud_server.url}/v1/stats", headers=auth(key))
    assert r.status_code == 403 and "inactive" in r.json()["error"]


def test_raw_keys_appear_in_no_log_line_and_no_database_column(memcloud_server, server_db_env):
    import httpx

    slug = unique_slug()
    key = memcloud_server.create_tenant(slug, "--dim", str(DIM))
    rng = np.random.default_rng(2)
    httpx.post(f"{memcloud_server.url}/v1/episodes", json=episode(DIM, rng), headers=auth(key))
    httpx.get(f"{memcloud_server.url}/v1/stats", headers=auth(key[:-1] + "Q"))
    secret = key.split("_", 2)[2]
    assert secret not in memcloud_server.log()
    dump = memcloud_server.manage("dumpdata", "tenants")  # TenantState is in tenants now
    assert key not in dump and secret not in dump
    assert key[3:11] in dump  # the public prefix is stored
