"""Keys this worker verified lately, so that a query can check its key in its last statement.

A query on PostgreSQL whose key a recent request of this worker verified starts from that key and
tenant, and checks them again in the statement that fetches its winners (`key_check_sql`, used by
episodes/selectors.py): one round trip a query instead of two. The key is still checked against
the database by every request, so revocation, expiry and deactivation take effect on the very next
request as before; what the memo saves is only the round trip before the search. A request whose
check fails is answered by the full authentication (tenants/authentication.py), never from here.

Entries are found by the key's public prefix and hold its SHA-256 (what the database stores, never
the key), compared with the presented key's in constant time as the full check does. They live
`TTL_SECS` (so the full check, with its `last_used_at` touch, still runs about once a minute per key
and worker) and are bounded in number.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache

from django.db import connection

from episodes.models import TenantState

from .models import ApiKey, Tenant
from .selectors import keys_joined, model_from_row

TTL_SECS = 60.0
MAX_KEYS = 1024


class Unconfirmed(Exception):
    """A query that started from a remembered key could not confirm it: authenticate in full."""


@dataclass(frozen=True)
class Verified:
    key_hash: str
    api_key: ApiKey
    tenant: Tenant
    at: float  # time.monotonic() of the verification

    def check_params(self) -> list:
        """`key_check_sql`'s parameters: the key and tenant as they were when verified."""
        t = self.tenant
        return [self.api_key.prefix, self.key_hash, t.pk, self.api_key.scope, t.slug, t.dim, t.metric]


_memo: OrderedDict[str, Verified] = OrderedDict()  # by key prefix
_lock = threading.Lock()


def remember(*, api_key: ApiKey, tenant: Tenant) -> None:
    with _lock:
        _memo[api_key.prefix] = Verified(key_hash=api_key.key_hash, api_key=api_key, tenant=tenant,
                                         at=time.monotonic())
        _memo.move_to_end(api_key.prefix)
        while len(_memo) > MAX_KEYS:
            _memo.popitem(last=False)


def recall(prefix: str, key_hash: str) -> Verified | None:
    """The verification of the key of this prefix, if it is the presented key (`key_hash`, compared
    in constant time) and recent enough to start a query from."""
    with _lock:
        entry = _memo.get(prefix)
        if entry is not None and time.monotonic() - entry.at > TTL_SECS:
            del _memo[prefix]
            return None
    if entry is None or not hmac.compare_digest(entry.key_hash, key_hash):
        return None
    return entry


def forget(prefix: str) -> None:
    with _lock:
        _memo.pop(prefix, None)


def clear() -> None:
    with _lock:
        _memo.clear()


@cache
def key_check_sql() -> str:
    """A CTE `k`: one row, the tenant's change counters (TenantState's columns), while the key of
    these parameters still authenticates as the verified tenant with the same scope, and the tenant is
    as it was (slug, dim, metric, active, no rate limit); no row otherwise. PostgreSQL only."""
    q = connection.ops.quote_name
    key, tenant, state = (q(m._meta.db_table) for m in (ApiKey, Tenant, TenantState))
    columns = ", ".join(f"{state}.{q(f.column)}" for f in TenantState._meta.concrete_fields)
    return (
        f"k AS (SELECT {columns} {keys_joined('JOIN')} "
        f"WHERE {key}.{q('prefix')} = %s AND {key}.{q('key_hash')} = %s AND {key}.{q('tenant_id')} = %s "
        f"AND {key}.{q('scope')} = %s AND {key}.{q('revoked_at')} IS NULL "
        f"AND ({key}.{q('expires_at')} IS NULL OR {key}.{q('expires_at')} > statement_timestamp()) "
        f"AND {tenant}.{q('slug')} = %s AND {tenant}.{q('dim')} = %s AND {tenant}.{q('metric')} = %s "
        f"AND {tenant}.{q('is_active')} AND {tenant}.{q('rate_limit')} IS NULL)"
    )


def state_from(row: tuple) -> TenantState:
    """The TenantState of `k`'s columns (the first of `row`)."""
    return model_from_row(TenantState, row)


STATE_COLUMNS = len(TenantState._meta.concrete_fields)
