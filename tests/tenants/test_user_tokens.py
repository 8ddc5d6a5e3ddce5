"""Tenant-signed user tokens (docs/api.md §2): every malformed, forged, stale or misdirected token is
a 401 JSON saying why, and stores nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from memcloud_client import mint_user_token

from .user_world import SLUG, body, client, command, make_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(make_tenant):
    return make_world(make_tenant)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict, claims: dict, secret: str | None) -> str:
    """A token signed (or not) exactly as given: what an attacker can send."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b"" if secret is None else hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(**over) -> dict:
    now = int(time.time())
    return {"sub": "alice", "scope": "write", "aud": SLUG, "exp": now + 600, **over}


def signed(world, *, secret: str | None = None, kid: str | None = None, **over) -> str:
    own_kid, own_secret = world.signing_key.split(".", 1)
    return jwt.encode(claims(**over), secret or own_secret, algorithm="HS256", headers={"kid": kid or own_kid})


def refused(world, token: str, because: str) -> None:
    before = world.admin.get("/v1/stats").json()["episodes"]
    for method, path, data in (("post", "/v1/episodes", body(90)), ("get", "/v1/stats", None),
                               ("post", "/v1/query", {"query_embedding": [1, 0, 0, 0], "top_k": 5})):
        r = client(token).get(path) if data is None else getattr(client(token), method)(path, data, format="json")
        assert r.status_code == 401, (because, r.status_code, r.content)
        assert r["Content-Type"].startswith("application/json")
        assert because in r.json()["error"], (because, r.json())
    assert world.admin.get("/v1/stats").json()["episodes"] == before


def test_a_good_token_works_and_acts_as_its_user(world):
    assert client(signed(world)).get("/v1/stats").json()["episodes"] == len(world.ids["alice"])
    assert client(signed(world, nbf=int(time.time()) - 5)).get("/v1/stats").status_code == 200
    # Within the documented leeway of 30 s, a just-expired token still passes.
    assert client(signed(world, exp=int(time.time()) - 5)).get("/v1/stats").status_code == 200


def test_expired(world):
    refused(world, signed(world, exp=int(time.time()) - 120), "expired")


def test_not_yet_valid(world):
    refused(world, signed(world, nbf=int(time.time()) + 300), "not yet valid")


def test_wrong_audience(world, make_tenant):
    make_tenant("rival", dim=4)
    refused(world, signed(world, aud="rival"), "audience")
    refused(world, signed(world, aud="ACME"), "audience")
    refused(world, signed(world, aud=["rival"]), "audience")


def test_unknown_kid(world, settings, tmp_path):
    import orjson

    settings.AGENT_MEM_AUDIT_LOG = str(tmp_path / "audit.jsonl")
    refused(world, signed(world, kid="sk_nosuchkid0"), "unknown signing key 'sk_nosuchkid0'")
    refused(world, signed(world, kid="x" * 5000), "unknown signing key")
    failed = [orjson.loads(line) for line in (tmp_path / "audit.jsonl").read_bytes().splitlines()]
    assert {line["op"] for line in failed} == {"auth_failed"}
    # The sender's kid is audited only when it has the kid format.
    assert {line["key_prefix"] for line in failed} == {"sk_nosuchkid0", None}


def test_revoked_signing_key(world):
    token = signed(world)
    assert client(token).get("/v1/stats").status_code == 200
    command("revokesigningkey", world.signing_key.split(".")[0])
    refused(world, token, "revoked")


def test_alg_none(world):
    kid = world.signing_key.split(".")[0]
    for alg in ("none", "None", "NONE"):
        refused(world, hand_made({"alg": alg, "typ": "JWT", "kid": kid}, claims(), None), "algorithm")


def test_rs256_with_the_secret_as_a_public_key(world):
    kid, secret = world.signing_key.split(".", 1)
    refused(world, hand_made({"alg": "RS256", "typ": "JWT", "kid": kid}, claims(), secret), "algorithm")
    refused(world, hand_made({"alg": "HS512", "typ": "JWT", "kid": kid}, claims(), secret), "algorithm")


def test_tampered_payload(world):
    header, payload, signature = signed(world).split(".")
    forged = b64(json.dumps(claims(sub="bob")).encode())
    refused(world, f"{header}.{forged}.{signature}", "bad signature")
    refused(world, signed(world, secret="not-the-secret-but-long-enough-for-hs256-use"), "bad signature")


def test_missing_exp(world):
    kid, secret = world.signing_key.split(".", 1)
    no_exp = {k: v for k, v in claims().items() if k != "exp"}
    refused(world, jwt.encode(no_exp, secret, algorithm="HS256", headers={"kid": kid}), "'exp'")


def test_exp_too_far_ahead(world):
    refused(world, signed(world, exp=int(time.time()) + 25 * 3600), "24 hours")


def test_missing_or_bad_claims(world):
    kid, secret = world.signing_key.split(".", 1)
    for name in ("sub", "aud", "scope"):
        partial = {k: v for k, v in claims().items() if k != name}
        refused(world, jwt.encode(partial, secret, algorithm="HS256", headers={"kid": kid}), f"'{name}'")
    refused(world, signed(world, scope="admin"), "scope")
    refused(world, signed(world, sub=""), "sub")
    refused(world, jwt.encode(claims(), secret, algorithm="HS256"), "kid")  # no kid in the header
    refused(world, "eyJhbGciOiJIUzI1NiJ9.not-base64!.x", "invalid token")


def test_the_clients_mint_user_token_works_for_each_scope(world):
    reader = client(mint_user_token(world.signing_key, SLUG, "bob", "read", 60))
    assert reader.get("/v1/stats").json()["episodes"] == len(world.ids["bob"])
    assert reader.post("/v1/episodes", body(91), format="json").status_code == 403
    writer = client(mint_user_token(world.signing_key, SLUG, "bob", "write", 60))
    assert writer.post("/v1/episodes", body(92), format="json").status_code == 201
    with pytest.raises(ValueError):
        mint_user_token(world.signing_key, SLUG, "bob", "write", 25 * 3600)
    with pytest.raises(ValueError):
        mint_user_token("no-dot", SLUG, "bob")


def test_the_database_alone_cannot_mint(world):
    """Only a salt is stored: the secret needs the server's key as well."""
    from tenants.models import SigningKey

    kid, secret = world.signing_key.split(".", 1)
    row = SigningKey.objects.get(kid=kid)
    assert secret not in (row.salt, row.name) and row.salt
    refused(world, signed(world, secret=row.salt), "bad signature")
