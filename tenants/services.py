"""Writes on tenants and keys. Each service owns its transaction."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from core.audit import audit
from core.errors import Conflict, InvalidInput, NotFound
from embedders import dim_of, parse_spec

from .keys import make_key
from .models import SLUG_PATTERN, ApiKey, Metric, Scope, SigningKey, Tenant, TenantState
from .tokens import MAX_USER_ID, make_signing_key

logger = logging.getLogger("memcloud.auth")


def tenant_create(
    *,
    slug: str,
    name: str = "",
    dim: int | None = None,
    metric: str = Metric.COSINE,
    rate_limit: int | None = None,
    max_episodes: int | None = None,
    default_ttl_secs: int | None = None,
    embedder: str = "",
) -> Tenant:
    if not re.fullmatch(SLUG_PATTERN, slug):  # re.match: `$` also matches before a final newline
        raise InvalidInput(f"slug: must match {SLUG_PATTERN}")
    if metric not in Metric.values:
        raise InvalidInput(f"metric: must be one of {', '.join(Metric.values)}")
    embedder, dim = embedder_and_dim(embedder, dim)
    dim = settings.AGENT_MEM_DIM if dim is None else dim  # 0 is a bad dim, not "the default"
    if dim < 1 or dim > 65536:
        raise InvalidInput("dim: must be between 1 and 65536")
    if default_ttl_secs is not None and default_ttl_secs < 1:
        raise InvalidInput("default_ttl_secs: must be at least 1 (leave it out to keep episodes forever)")
    if rate_limit is not None and rate_limit < 1:
        raise InvalidInput("rate_limit: must be at least 1 (leave it out to use AGENT_MEM_RATE_LIMIT)")
    if max_episodes is not None and max_episodes < 0:
        raise InvalidInput("max_episodes: must not be negative (leave it out for no quota)")
    if len(name) > Tenant._meta.get_field("name").max_length:
        raise InvalidInput(f"name: at most {Tenant._meta.get_field('name').max_length} characters")
    try:
        with transaction.atomic():
            tenant = Tenant.objects.create(
                slug=slug, name=name or slug, dim=dim, metric=metric, rate_limit=rate_limit,
                max_episodes=max_episodes, default_ttl_secs=default_ttl_secs, embedder=embedder,
            )
            TenantState.objects.create(tenant=tenant)
    except IntegrityError:
        raise Conflict(f"slug: tenant {slug!r} already exists") from None
    return tenant


def embedder_and_dim(embedder: str | None, dim: int | None) -> tuple[str, int | None]:
    """The canonical embedder spec ("" for none) and the tenant's dim: the embedder's own when it
    has one (a different explicit `dim` is refused), else `dim` as given. May load a local model or
    call the provider once (embedders.dim_of); its failures keep their own status (400/502/503)."""
    if not embedder or not embedder.strip():
        return "", dim
    spec = parse_spec(embedder)
    width = dim_of(spec.text)
    if dim is not None and dim != width:
        raise InvalidInput(f"dim: {dim} differs from the embedder's {width} ({spec.text}); leave dim out")
    return spec.text, width


def tenant_get_or_create_default() -> Tenant:
    """The tenant `default` that AGENT_MEM_API_KEY authenticates as (created on first use)."""
    tenant = Tenant.objects.filter(slug="default").select_related("state").first()
    if tenant is not None:
        return tenant
    with contextlib.suppress(Conflict):  # another worker may create it first
        tenant_create(slug="default", name="default")
    return Tenant.objects.select_related("state").get(slug="default")


def key_issue(
    *,
    tenant: Tenant,
    name: str = "",
    scope: str = Scope.WRITE,
    expires_at: datetime | None = None,
    user_id: str | None = None,
) -> tuple[ApiKey, str]:
    """Issue a key; the raw key is returned once and never stored. `user_id`: a user-bound key,
    restricted to that end user's episodes (docs/api.md §2)."""
    if scope not in Scope.values:
        raise InvalidInput(f"scope: must be one of {', '.join(Scope.values)}")
    user_id = validate_bound_user(user_id, scope)
    for _ in range(5):  # prefixes are random: retry the rare collision
        raw, prefix, key_hash = make_key()
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    tenant=tenant, name=name, prefix=prefix, key_hash=key_hash, scope=scope,
                    expires_at=expires_at, user_id=user_id,
                )
            break
        except IntegrityError:
            continue
    else:  # pragma: no cover - 36^8 prefixes
        raise Conflict("could not allocate a unique key prefix")
    audit("key_issued", tenant_id=tenant.slug, key_prefix=prefix, user_id=user_id)
    return api_key, raw


def validate_bound_user(user_id: str | None, scope: str) -> str | None:
    """The user id of a user-bound key (None: a tenant-wide key); such a key is read or write only."""
    if user_id is None:
        return None
    if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_USER_ID:
        raise InvalidInput(f"user_id: must be 1 to {MAX_USER_ID} characters")
    if scope == Scope.ADMIN:
        raise InvalidInput("scope: a user-bound key is 'read' or 'write', never 'admin'")
    return user_id


def signing_key_create(*, tenant: Tenant, name: str = "") -> tuple[SigningKey, str]:
    """A new signing key; `<kid>.<secret>` is returned once and never stored (only a salt is)."""
    for _ in range(5):  # kids are random: retry the rare collision
        kid, salt, printed = make_signing_key()
        try:
            with transaction.atomic():
                signing_key = SigningKey.objects.create(tenant=tenant, kid=kid, salt=salt, name=name)
            break
        except IntegrityError:
            continue
    else:  # pragma: no cover - 36^10 kids
        raise Conflict("could not allocate a unique kid")
    audit("signing_key_created", tenant_id=tenant.slug, key_prefix=kid)
    return signing_key, printed


def signing_key_revoke(*, kid: str) -> SigningKey:
    """Revoke a signing key: its tokens are refused from the next request on (each is checked
    against the key's row)."""
    signing_key = SigningKey.objects.select_related("tenant").filter(kid=kid).first()
    if signing_key is None:
        raise NotFound(f"no signing key {kid!r}")
    return _revoked(signing_key, op="signing_key_revoked", key_prefix=kid)


def _revoked(credential: ApiKey | SigningKey, *, op: str, key_prefix: str) -> ApiKey | SigningKey:
    """Mark a key or signing key revoked, and audit it, once: revoking again keeps the first time."""
    if credential.revoked_at is None:
        credential.revoked_at = timezone.now()
        credential.save(update_fields=["revoked_at"])
        audit(op, tenant_id=credential.tenant.slug, key_prefix=key_prefix)
    return credential


def key_revoke(*, prefix: str) -> ApiKey:
    api_key = ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()
    if api_key is None:
        raise NotFound(f"no key with prefix {prefix!r}")
    return _revoked(api_key, op="key_revoked", key_prefix=prefix)


def key_roll(*, prefix: str, grace_hours: float = 24) -> tuple[ApiKey, str]:
    """A new key of the same tenant and scope; the old one expires after the grace period."""
    if grace_hours < 0:
        raise InvalidInput("grace_hours: must be >= 0")
    old = ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()
    if old is None or not old.is_usable():
        raise NotFound(f"no usable key with prefix {prefix!r}")
    new, raw = key_issue(tenant=old.tenant, name=old.name, scope=old.scope, expires_at=old.expires_at,
                         user_id=old.user_id)
    grace_end = timezone.now() + timedelta(hours=grace_hours)
    if old.expires_at is None or old.expires_at > grace_end:
        old.expires_at = grace_end
        old.save(update_fields=["expires_at"])
    audit("key_rolled", tenant_id=old.tenant.slug, key_prefix=prefix, new_key_prefix=new.prefix)
    return new, raw


_TOUCH_SQL = (f"UPDATE {ApiKey._meta.db_table} SET last_used_at = %s "
              "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit WHERE id = %s")


def key_touch(*, api_key: ApiKey) -> None:
    """Record use at most once a minute per key: no write on every request."""
    now = timezone.now()
    if api_key.pk and (api_key.last_used_at is None or now - api_key.last_used_at > timedelta(minutes=1)):
        if connection.vendor == "postgresql" and connection.get_autocommit():
            # A usage date lost in a crash is acceptable: no wait for the WAL flush on commit. One
            # statement, its own transaction (set_config's local setting lasts exactly that): one
            # round trip where BEGIN, SET LOCAL, UPDATE and COMMIT took four, for each of the
            # hundreds of keys a minute first seen on a server of many tenants.
            with connection.cursor() as cursor:
                cursor.execute(_TOUCH_SQL, [now, api_key.pk])
        else:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


# The key a request should touch once its answer is sent (touch_answered): with thousands of tenants,
# hundreds of keys a minute are first seen, and a committed UPDATE on the request path cost each of
# those requests about a millisecond (docs/scaling.md §4).
_pending_touch: contextvars.ContextVar[ApiKey | None] = contextvars.ContextVar("memcloud_key_touch", default=None)


def key_touch_after_answer(*, api_key: ApiKey) -> None:
    """key_touch, once the request's answer has been sent (Django's `request_finished`)."""
    _pending_touch.set(api_key)


def touch_answered(**_kwargs) -> None:
    """`request_finished` receiver: the deferred key_touch of the request just answered. Never raises:
    a usage date is not worth an error after the answer."""
    api_key = _pending_touch.get()
    if api_key is None:
        return
    _pending_touch.set(None)
    try:
        key_touch(api_key=api_key)
    except DatabaseError as exc:
        logger.warning("last_used_at of %s not written: %s", api_key.prefix, exc)
