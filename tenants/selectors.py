"""Reads on tenants and keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import connection, models
from django.utils.dateparse import parse_datetime

from core import db

from .models import ApiKey, SigningKey, Tenant, TenantState

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@cache
def _lookup_sql(key_model: type[models.Model] = ApiKey, column: str = "prefix", distributed: bool = False) -> str:
    """The key (an API key by prefix, or a signing key by kid), its tenant and the tenant's change
    counter in one statement (`distributed`: the key and its tenant only, the state being read by
    _state_sql). Written once: the ORM would compile this three-table join on every request (about a
    millisecond each); and prepared once per connection (core/db.py)."""
    q = connection.ops.quote_name
    joined = (key_model, Tenant) if distributed else (key_model, Tenant, TenantState)
    columns = ", ".join(_column(m, f) for m in joined for f in m._meta.concrete_fields)
    return (f"SELECT {columns} {keys_joined(None if distributed else 'LEFT JOIN', key_model)} "
            f"WHERE {q(key_model._meta.db_table)}.{q(column)} = %s")


@cache
def _state_sql() -> str:
    """A tenant's state by its tenant id: on a distributed database, a statement on one node."""
    q = connection.ops.quote_name
    columns = ", ".join(_column(TenantState, f) for f in TenantState._meta.concrete_fields)
    return f"SELECT {columns} FROM {q(TenantState._meta.db_table)} WHERE {q('tenant_id')} = %s"


def _column(model, field) -> str:
    q = connection.ops.quote_name
    name = f"{q(model._meta.db_table)}.{q(field.column)}"
    # Datetimes as integer microseconds on PostgreSQL: Django's timestamptz loader parses text
    # in Python, about 8 µs a column on every request.
    if connection.vendor == "postgresql" and isinstance(field, models.DateTimeField):
        return f"(extract(epoch FROM {name}) * 1000000)::bigint"
    return name


def keys_joined(state_join: str | None, key_model: type[models.Model] = ApiKey) -> str:
    """`FROM` the key table, joined to each key's tenant and (by `state_join`, unless None) the
    tenant's state."""
    q = connection.ops.quote_name
    key, tenant, state = (q(m._meta.db_table) for m in (key_model, Tenant, TenantState))
    joined = f"FROM {key} JOIN {tenant} ON {tenant}.{q('id')} = {key}.{q('tenant_id')}"
    if state_join is None:
        return joined
    return f"{joined} {state_join} {state} ON {state}.{q('tenant_id')} = {tenant}.{q('id')}"


def _value(field: models.Field, value):
    # Raw rows skip the ORM's per-backend converters; SQLite hands back naive datetimes and integers.
    if value is not None and isinstance(field, models.DateTimeField):
        if isinstance(value, int):  # microseconds since the epoch (PostgreSQL, see _lookup_sql)
            return _EPOCH + timedelta(microseconds=value)
        parsed = parse_datetime(value) if isinstance(value, str) else value
        return parsed if parsed is None or parsed.tzinfo else parsed.replace(tzinfo=UTC)  # stored in UTC
    if value is not None and isinstance(field, models.BooleanField):
        return bool(value)
    return value


def model_from_row(model: type[models.Model], row) -> models.Model:
    """An instance of `model` from a raw row whose first columns are its concrete fields, in order."""
    fields = model._meta.concrete_fields
    values = [_value(f, v) for f, v in zip(fields, row[: len(fields)], strict=True)]
    return model.from_db("default", [f.attname for f in fields], values)


def _with_tenant(key_model: type[models.Model], column: str, value: str):
    """The key of `value` with `.tenant` and `.tenant.state` loaded, or None: one statement, or on a
    distributed database two (the state by its tenant id, on one node)."""
    distributed = settings.AGENT_MEM_DISTRIBUTED
    row = db.fetch_one(_lookup_sql(key_model, column, distributed), [value])
    if row is None:
        return None
    objects, offset = [], 0
    for model in (key_model, Tenant) if distributed else (key_model, Tenant, TenantState):
        part = row[offset : offset + len(model._meta.concrete_fields)]
        offset += len(part)
        objects.append(None if part[0] is None else model_from_row(model, part))
    key, tenant = objects[:2]
    if distributed:
        state_row = db.fetch_one(_state_sql(), [tenant.pk])
        state = None if state_row is None else model_from_row(TenantState, state_row)
    else:
        state = objects[2]
    key.tenant = tenant
    if state is not None:
        tenant.state = state
    return key


def key_with_tenant(*, prefix: str) -> ApiKey | None:
    """The key of this prefix with `.tenant` and `.tenant.state` loaded, or None."""
    return _with_tenant(ApiKey, "prefix", prefix)


def signing_key_with_tenant(*, kid: str) -> SigningKey | None:
    """The signing key of this kid with `.tenant` and `.tenant.state` loaded, or None: the one round
    trip a token request makes, as a key request makes key_with_tenant's."""
    return _with_tenant(SigningKey, "kid", kid)
