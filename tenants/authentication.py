"""DRF authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>` (SPEC section 2)."""

from __future__ import annotations

import hmac
from functools import cache

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from core.audit import audit
from core.errors import Forbidden

from .keys import hash_key, parse_prefix, verify
from .models import ApiKey, Scope
from .selectors import key_with_tenant
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
            return self._accept(request, tenant, ApiKey(tenant=tenant, prefix="bootstrap", scope=Scope.ADMIN))
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
        return self._accept(request, tenant, api_key)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="memcloud"'

    @staticmethod
    def _accept(request, tenant, api_key):
        if not tenant.is_active:
            raise Forbidden(f"tenant {tenant.slug!r} is inactive")
        request._request.tenant_slug = tenant.slug  # for the request log line
        return tenant, api_key

    @staticmethod
    def _fail(prefix: str | None, message: str):
        audit("auth_failed", tenant_id=None, key_prefix=prefix)
        raise exceptions.AuthenticationFailed(message)
