"""DRF authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`, where the key is an API key
or a tenant-signed user token (docs/api.md §2)."""

from __future__ import annotations

import hmac
from functools import cache
from typing import NoReturn

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from core.audit import audit
from core.errors import Forbidden

from . import key_memo, tokens
from .keys import hash_key, parse_prefix, verify
from .models import ApiKey, Scope, Tenant
from .principal import Principal
from .selectors import key_with_tenant, signing_key_with_tenant
from .services import key_touch_after_answer, tenant_get_or_create_default


@cache
def _bootstrap_hash(raw: str) -> str:
    return hash_key(raw)


def presented_key(request) -> str | None:
    """The key the request carries; two different keys in the two headers are refused."""
    auth = request.META.get("HTTP_AUTHORIZATION", "")
    header_key = request.META.get("HTTP_X_API_KEY", "")
    bearer = None
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <key>'")
        bearer = value.strip()
    header_key = header_key.strip() or None
    if bearer and header_key and not hmac.compare_digest(bearer.encode(), header_key.encode()):
        raise exceptions.AuthenticationFailed("Authorization and X-API-Key carry different keys")
    return bearer or header_key


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        try:
            raw = presented_key(request)
        except exceptions.AuthenticationFailed:
            audit("auth_failed", tenant_id=None, key_prefix=None)  # malformed header: no prefix to trust
            raise
        if raw is None:
            return None
        prefix = parse_prefix(raw)
        bootstrap = settings.AGENT_MEM_API_KEY
        if bootstrap and hmac.compare_digest(hash_key(raw), _bootstrap_hash(bootstrap)):
            tenant = tenant_get_or_create_default()
            return self._accept(request, tenant, Principal(scope=Scope.ADMIN, prefix="bootstrap",
                                                           api_key=ApiKey(tenant=tenant, prefix="bootstrap",
                                                                          scope=Scope.ADMIN)))
        if prefix is None and tokens.looks_like_token(raw):
            return self._token(request, raw)
        api_key = None
        if prefix is not None:
            # One round trip: key, tenant and the tenant's change counter (for cache catch-up).
            api_key = key_with_tenant(prefix=prefix)
        if api_key is None:
            verify(raw, "0" * 64)  # same work as a real comparison: no timing difference to learn from
            self._fail(prefix, "invalid API key")
        if not verify(raw, api_key.key_hash):
            self._fail(prefix, "invalid API key")
        now = timezone.now()
        if api_key.revoked_at is not None:
            self._fail(prefix, "API key has been revoked")
        if api_key.expires_at is not None and api_key.expires_at <= now:
            self._fail(prefix, "API key has expired")
        tenant = api_key.tenant
        if not tenant.is_active:
            raise Forbidden(f"tenant {tenant.slug!r} is inactive")
        key_touch_after_answer(api_key=api_key)
        principal = Principal.of_key(api_key)
        key_memo.remember(api_key=api_key, tenant=tenant, principal=principal)
        return self._accept(request, tenant, principal)

    def _token(self, request, raw: str):
        """A tenant-signed token: its signing key, tenant and change counter in one round trip (by
        kid, never a lookup of the token itself), then PyJWT checks it with the re-derived secret."""
        kid = None
        try:
            kid = tokens.unverified_kid(raw)
            signing_key = signing_key_with_tenant(kid=kid)
            if signing_key is None:
                raise tokens.TokenError(f"unknown signing key {kid!r}")
            if signing_key.revoked_at is not None:
                raise tokens.TokenError(f"signing key {kid!r} has been revoked")
            tenant: Tenant = signing_key.tenant
            claims = tokens.verify(raw, kid=kid, secret=tokens.derive_secret(kid, signing_key.salt),
                                   audience=tenant.slug)
        except tokens.TokenError as exc:
            self._fail(kid, str(exc))
        return self._accept(request, tenant, Principal(scope=claims.scope, prefix=kid, user_id=claims.user_id))

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="memcloud"'

    @staticmethod
    def _accept(request, tenant: Tenant, principal: Principal):
        if not tenant.is_active:
            raise Forbidden(f"tenant {tenant.slug!r} is inactive")
        request._request.tenant_slug = tenant.slug  # for the request log line
        return tenant, principal

    @staticmethod
    def _fail(prefix: str | None, message: str) -> NoReturn:
        audit("auth_failed", tenant_id=None, key_prefix=prefix)
        raise exceptions.AuthenticationFailed(message)
