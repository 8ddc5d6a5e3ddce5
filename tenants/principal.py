"""Who a /v1 request acts as: `request.auth` (`request.user` stays the Tenant, which rate limits,
quotas and usage are counted against)."""

from __future__ import annotations

from dataclasses import dataclass

from .models import ApiKey


@dataclass(frozen=True)
class Principal:
    scope: str
    # The API key's prefix, or the signing key's kid for a token: what audit lines call key_prefix.
    prefix: str
    # The end user a user-bound key or token is restricted to; None: every user of the tenant.
    user_id: str | None = None
    api_key: ApiKey | None = None  # None for a token

    @classmethod
    def of_key(cls, api_key: ApiKey) -> Principal:
        return cls(scope=api_key.scope, prefix=api_key.prefix, user_id=api_key.user_id or None, api_key=api_key)
