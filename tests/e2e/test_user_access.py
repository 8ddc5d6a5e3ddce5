"""User-bound keys and tenant-signed tokens through a real 3-worker gunicorn (docs/api.md §2).

Requests go over fresh connections, so they land on different workers: a token minted by the SDK
function works on every worker with no registration anywhere (the server holds only the signing
key's salt), a revoked signing key is refused by every worker at once, and user A's credentials
never reach user B's episodes."""

from __future__ import annotations

import uuid

import httpx
import numpy as np
import pytest
from memcloud_client import AuthenticationError, MemcloudClient, NotFound, PermissionDenied, mint_user_token

from tests.support.tenants import episode, fresh_client, unique_slug

pytestmark = pytest.mark.e2e
DIM = 8


@pytest.fixture
def tenant(memcloud_server):
    """(slug, tenant-wide key, signing key `<kid>.<secret>`, alice's user-bound key)."""
    slug = unique_slug("ua")
    admin = memcloud_server.create_tenant(slug, "--dim", str(DIM))
    signing_key = memcloud_server.manage("signingkey", slug)
    alice_key = memcloud_server.manage("issuekey", slug, "--user-id", "alice")
    return slug, admin, signing_key, alice_key


def test_an_sdk_minted_token_works_on_every_worker(memcloud_server, tenant):
    slug, admin, signing_key, _ = tenant
    rng = np.random.default_rng(7)
    token = mint_user_token(signing_key, slug, "alice", "write", ttl=600)
    stored = []
    for _ in range(12):  # a new client (connection) each time: the requests spread over the workers
        with MemcloudClient(memcloud_server.url, api_key=token) as alice:
            stored.append(alice.store(**episode(DIM, rng)))
            assert alice.stats().episodes == len(stored)
    with fresh_client(memcloud_server.url, admin) as tenant_wide:
        assert {tenant_wide.get(f"/v1/episodes/{i}").json()["user_id"] for i in stored} == {"alice"}
    # Any number of users' tokens work without registering them anywhere.
    for n in range(6):
        fresh = mint_user_token(signing_key, slug, f"user-{n}", "read", ttl=60)
        with fresh_client(memcloud_server.url, fresh) as c:
            assert c.get("/v1/stats").json()["episodes"] == 0


def test_a_revoked_signing_key_is_refused_by_every_worker(memcloud_server, tenant):
    slug, _, signing_key, _ = tenant
    token = mint_user_token(signing_key, slug, "alice", "read", ttl=600)
    with fresh_client(memcloud_server.url, token) as c:
        assert all(c.get("/v1/stats").status_code == 200 for _ in range(6))
        memcloud_server.manage("revokesigningkey", signing_key.split(".")[0])
        for _ in range(9):
            r = c.get("/v1/stats")
            assert r.status_code == 401 and "revoked" in r.json()["error"], r.text
    with pytest.raises(AuthenticationError, match="revoked"), MemcloudClient(memcloud_server.url,
                                                                              api_key=token) as sdk:
        sdk.stats()


@pytest.mark.parametrize("kind", ["key", "token"])
def test_alice_never_reaches_bobs_episodes(memcloud_server, tenant, kind):
    slug, admin, signing_key, alice_key = tenant
    rng = np.random.default_rng(8)
    with fresh_client(memcloud_server.url, admin) as tenant_wide:
        bobs = tenant_wide.post("/v1/episodes/batch", json={"episodes": [
            episode(DIM, rng, user_id="bob") for _ in range(4)]}).json()["ids"]
        before = {i: tenant_wide.get(f"/v1/episodes/{i}").json() for i in bobs}
    credential = alice_key if kind == "key" else mint_user_token(signing_key, slug, "alice", "write", 600)
    with fresh_client(memcloud_server.url, credential) as alice:
        own = alice.post("/v1/episodes", json=episode(DIM, rng)).json()["id"]
        for other in bobs:
            assert alice.get(f"/v1/episodes/{other}").status_code == 404
            assert alice.patch(f"/v1/episodes/{other}", json={"reward": 9}).status_code == 404
            assert alice.delete(f"/v1/episodes/{other}").status_code == 404
        hits = alice.post("/v1/query", json={"query_embedding": rng.normal(size=DIM).tolist(), "top_k": 100})
        assert [h["id"] for h in hits.json()["episodes"]] == [own]
        assert alice.get("/v1/episodes", params={"user_id": "bob"}).status_code == 403
        assert alice.post("/v1/query", json={"query_embedding": [1.0] * DIM, "user_id": "bob"}).status_code == 403
        assert alice.post("/v1/episodes", json=episode(DIM, rng, user_id="bob")).status_code == 403
        assert alice.patch(f"/v1/episodes/{own}", json={"user_id": "bob"}).status_code == 403
        assert alice.post("/v1/episodes/delete", json={"ids": bobs}).json() == {"removed": 0}
        assert alice.post("/v1/prune/keep-newest", json={"n": 0}).json() == {"removed": 1}
        assert alice.post("/v1/save", json={"path": f"ua-{uuid.uuid4().hex[:8]}"}).status_code == 403
        assert alice.get("/v1/stats").json()["episodes"] == 0
    with fresh_client(memcloud_server.url, admin) as tenant_wide:
        assert {i: tenant_wide.get(f"/v1/episodes/{i}").json() for i in bobs} == before
    with MemcloudClient(memcloud_server.url, api_key=credential) as sdk:
        with pytest.raises(NotFound):
            sdk.get(bobs[0])
        with pytest.raises(PermissionDenied, match="user_id"):
            sdk.query([1.0] * DIM, user_id="bob")


def test_a_forged_token_is_a_401_json(memcloud_server, tenant):
    slug, _, signing_key, _ = tenant
    kid = signing_key.split(".")[0]
    forged = mint_user_token(f"{kid}.not-the-secret", slug, "alice", "write", 600)
    r = httpx.post(f"{memcloud_server.url}/v1/episodes", headers={"Authorization": f"Bearer {forged}"},
                   json=episode(DIM, np.random.default_rng(9)))
    assert r.status_code == 401 and r.json() == {"error": "token has a bad signature"}


def test_no_signing_secret_or_token_in_any_log_line_or_database_column(memcloud_server, tenant):
    slug, _, signing_key, _ = tenant
    secret = signing_key.split(".", 1)[1]
    token = mint_user_token(signing_key, slug, "alice", "write", 600)
    with fresh_client(memcloud_server.url, token) as alice:
        alice.post("/v1/episodes", json=episode(DIM, np.random.default_rng(10))).raise_for_status()
    dump = memcloud_server.manage("dumpdata", "tenants", "core")
    log = memcloud_server.log()
    for text in (dump, log):
        assert secret not in text and token not in text and token.split(".")[2] not in text
    assert signing_key.split(".")[0] in dump  # the public kid is stored
