"""Tenant-signed user tokens (docs/api.md §2): signing secrets and HS256 JWT verification.

A signing key is printed once as `<kid>.<secret>`. The database keeps only the kid and a random
salt; the secret is HMAC-SHA256(server key, kid + salt), re-derived on every use from the
project's secret key. So a copy of the database alone cannot mint tokens, and no reversible
encryption (nor a crypto package beyond the standard library) is needed (docs/design.md,
"User-level access").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from functools import cache

import jwt
from django.conf import settings

from .keys import ALPHABET

KID_START = "sk_"
KID_LENGTH = 10
ALGORITHM = "HS256"
LEEWAY_SECS = 30  # clock skew tolerated on exp and nbf
MAX_TTL_SECS = 24 * 3600  # exp at most this far ahead of the server's clock (plus the leeway)
MAX_USER_ID = 256  # as Episode.user_id
TOKEN_SCOPES = ("read", "write")
_DERIVATION = b"memcloud.signing-key.v1"


class TokenError(Exception):
    """Why a token is refused: the message is the 401's error text."""


@dataclass(frozen=True)
class TokenClaims:
    kid: str
    user_id: str
    scope: str


def looks_like_token(raw: str) -> bool:
    """A JWT (three base64url parts), not one of our API keys (mc_...)."""
    return raw.count(".") == 2 and not raw.startswith("mc_")


@cache
def _server_key() -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), _DERIVATION, hashlib.sha256).digest()


def derive_secret(kid: str, salt: str) -> str:
    """The signing secret of a kid, from its stored salt and the server's key."""
    digest = hmac.new(_server_key(), f"{kid}.{salt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_signing_key() -> tuple[str, str, str]:
    """A new (kid, salt, printed `<kid>.<secret>`)."""
    kid = KID_START + "".join(secrets.choice(ALPHABET) for _ in range(KID_LENGTH))
    salt = secrets.token_urlsafe(32)
    return kid, salt, f"{kid}.{derive_secret(kid, salt)}"


def unverified_kid(token: str) -> str:
    """The `kid` of the token's header, after refusing any algorithm but HS256 (before any lookup)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise TokenError("invalid token: not a well-formed JWT") from None
    if header.get("alg") != ALGORITHM:
        raise TokenError(f"invalid token: algorithm must be {ALGORITHM}, not {header.get('alg')!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("invalid token: the header lacks 'kid'")
    if not is_kid(kid):  # not echoed nor audited: it is the sender's text, of any length
        raise TokenError("unknown signing key")
    return kid


def is_kid(kid: str) -> bool:
    body = kid[len(KID_START):]
    return kid.startswith(KID_START) and len(body) == KID_LENGTH and all(c in ALPHABET for c in body)


def _why(exc: jwt.InvalidTokenError, audience: str) -> str:
    """What a refused token is told: PyJWT's failure, in the contract's words (docs/api.md §2.2)."""
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the '{exc.claim}' claim"
    reasons = (
        (jwt.ExpiredSignatureError, "token has expired"),
        (jwt.ImmatureSignatureError, "token is not yet valid (nbf)"),
        (jwt.InvalidAudienceError, f"token has the wrong audience: 'aud' must be the tenant's slug {audience!r}"),
        (jwt.InvalidSignatureError, "token has a bad signature"),
        (jwt.InvalidAlgorithmError, f"invalid token: algorithm must be {ALGORITHM}"),
    )
    return next((why for kind, why in reasons if isinstance(exc, kind)), f"invalid token: {exc}")


def verify(token: str, *, kid: str, secret: str, audience: str) -> TokenClaims:
    """The token's claims if its signature, times, audience and claims are right; else TokenError
    saying why. PyJWT checks signature, exp, nbf and aud with the algorithm pinned to HS256."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], audience=audience, leeway=LEEWAY_SECS,
            options={"require": ["exp", "sub", "aud", "scope"], "verify_iat": False},
        )
    except jwt.InvalidTokenError as exc:
        raise TokenError(_why(exc, audience)) from None
    return _claims(claims, kid=kid)


def _claims(claims: dict, *, kid: str) -> TokenClaims:
    exp = claims["exp"]  # PyJWT checked it is an integer in the future
    if exp > time.time() + MAX_TTL_SECS + LEEWAY_SECS:
        raise TokenError("token 'exp' is more than 24 hours ahead")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub or len(sub) > MAX_USER_ID:
        raise TokenError(f"token 'sub' must be a user id of 1 to {MAX_USER_ID} characters")
    scope = claims["scope"]
    if scope not in TOKEN_SCOPES:
        raise TokenError("token 'scope' must be 'read' or 'write'")
    return TokenClaims(kid=kid, user_id=sub, scope=scope)
