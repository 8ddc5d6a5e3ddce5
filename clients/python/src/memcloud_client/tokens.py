"""Minting user tokens for a tenant's end users (HS256 JWTs), with the standard library only.

An application holds a signing key, printed once by `manage.py signingkey SLUG` as `<kid>.<secret>`,
and mints a short-lived token per end user; the token is used as the api_key of a MemcloudClient
and acts as a key bound to that user (sees and changes only their episodes)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

MAX_TTL_SECS = 24 * 3600  # the server refuses tokens whose exp is further ahead


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_user_token(signing_key: str, tenant: str, user_id: str, scope: str = "read", ttl: float = 3600,
                    *, not_before: float | None = None) -> str:
    """A token for `user_id` of tenant `tenant` (its slug), valid for `ttl` seconds (at most 24 h).

    `signing_key`: the `<kid>.<secret>` printed by `manage.py signingkey`. `scope`: "read" or "write".
    `not_before`: optional Unix time before which the token is not yet valid."""
    kid, dot, secret = signing_key.partition(".")
    if not dot or not kid or not secret:
        raise ValueError("signing_key must be '<kid>.<secret>' as printed by `manage.py signingkey`")
    if scope not in ("read", "write"):
        raise ValueError("scope must be 'read' or 'write'")
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("user_id must be a non-empty string")
    if not 0 < ttl <= MAX_TTL_SECS:
        raise ValueError(f"ttl must be between 0 and {MAX_TTL_SECS} seconds")
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "scope": scope, "aud": tenant, "iat": now,
                                 "exp": now + int(ttl)}
    if not_before is not None:
        claims["nbf"] = int(not_before)
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = (_b64(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64(json.dumps(claims, separators=(",", ":")).encode()))
    signature = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"
