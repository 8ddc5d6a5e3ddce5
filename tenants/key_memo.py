"""Keys this worker verified lately, so that a query can check its key in its last statement.

A query on PostgreSQL whose API key a recent request of this worker verified starts from that
verification (its principal: key, scope, bound user; and tenant) and checks it again in the statement
that fetches its winners (`checked`): one round trip a query instead of two, about a tenth of a 10k
query (docs/design.md). The key is still checked against the database by every request, so
revocation, expiry, deactivation and a changed scope take effect on the very next request; what the
memo saves is only the round trip before the search. A request whose check fails is answered by
the full authentication (tenants/authentication.py), never from here.

Only API keys are remembered (a token is checked without a key lookup already), only where nothing
has to be counted before the answer (no rate limit) and the database is one PostgreSQL (on a
distributed one every statement must route to one node by its tenant: docs/scaling.md).

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

from django.conf import settings
from django.db import DatabaseError, connection

from core import db, usage

from .keys import hash_key, parse_prefix
from .models import ApiKey, Tenant, TenantState
from .principal import Principal
from .selectors import keys_joined, model_from_row

TTL_SECS = 60.0
MAX_KEYS = 1024
_STATE_COLUMNS = len(TenantState._meta.concrete_fields)


class Unconfirmed(Exception):
    """A query that started from a remembered key could not confirm it: authenticate in full."""


@dataclass(frozen=True)
class Verified:
    key_hash: str
    tenant: Tenant
    principal: Principal
    at: float  # time.monotonic() of the verification

    def check_params(self) -> list:
        """_check_sql()'s parameters: the key and tenant as they were when verified."""
        t, key = self.tenant, self.principal.api_key
        return [key.prefix, self.key_hash, t.pk, key.scope, key.user_id or "", t.slug, t.dim, t.metric]


_memo: OrderedDict[str, Verified] = OrderedDict()  # by key prefix
_lock = threading.Lock()


def usable() -> bool:
    """Whether a query may start from a remembered key on this deployment at all."""
    return (connection.vendor == "postgresql" and not settings.AGENT_MEM_RATE_LIMIT
            and not settings.AGENT_MEM_DISTRIBUTED)


def remember(*, api_key: ApiKey, tenant: Tenant, principal: Principal) -> None:
    """Called by the full authentication once it has accepted `api_key`."""
    if tenant.rate_limit is not None or not usable():
        return
    with _lock:
        _memo[api_key.prefix] = Verified(key_hash=api_key.key_hash, tenant=tenant, principal=principal,
                                         at=time.monotonic())
        _memo.move_to_end(api_key.prefix)
        while len(_memo) > MAX_KEYS:
            _memo.popitem(last=False)


def recall(raw_key: str | None) -> Verified | None:
    """The verification of the presented key, if this worker made one lately (compared in constant
    time, as the full check compares) and a query may start from it."""
    prefix = None if raw_key is None else parse_prefix(raw_key)
    if prefix is None or not usable():
        return None
    with _lock:
        entry = _memo.get(prefix)
        if entry is not None and time.monotonic() - entry.at > TTL_SECS:
            del _memo[prefix]
            return None
    if entry is None or not hmac.compare_digest(entry.key_hash, hash_key(raw_key)):
        return None
    return entry


def forget(prefix: str) -> None:
    with _lock:
        _memo.pop(prefix, None)


def clear() -> None:
    with _lock:
        _memo.clear()


@cache
def _check_sql() -> str:
    """A CTE `k`: one row, the tenant's change counters (TenantState's columns), while the key of
    check_params() still authenticates as the verified tenant with the same scope and bound user, and
    the tenant is as it was (slug, dim, metric, active, no rate limit); no row otherwise."""
    q = connection.ops.quote_name
    key, tenant, state = (q(m._meta.db_table) for m in (ApiKey, Tenant, TenantState))
    columns = ", ".join(f"{state}.{q(f.column)}" for f in TenantState._meta.concrete_fields)
    return (
        f"k AS (SELECT {columns} {keys_joined('JOIN')} "
        f"WHERE {key}.{q('prefix')} = %s AND {key}.{q('key_hash')} = %s AND {key}.{q('tenant_id')} = %s "
        f"AND {key}.{q('scope')} = %s AND COALESCE({key}.{q('user_id')}, '') = %s "
        f"AND {key}.{q('revoked_at')} IS NULL "
        f"AND ({key}.{q('expires_at')} IS NULL OR {key}.{q('expires_at')} > statement_timestamp()) "
        f"AND {tenant}.{q('slug')} = %s AND {tenant}.{q('dim')} = %s AND {tenant}.{q('metric')} = %s "
        f"AND {tenant}.{q('is_active')} AND {tenant}.{q('rate_limit')} IS NULL)"
    )


def checked(check: Verified, select: str | None, params: list) -> tuple[TenantState, list[tuple]]:
    """The rows of `select` (a SELECT whose first column is never NULL, or None for none) and the
    tenant's change counters, read by one
    statement that checks the key of `check` again and counts the request's usage if it checks out;
    Unconfirmed, with nothing counted, if it does not (or the statement failed: the full
    authentication runs next, and answers for the database)."""
    tenant_pk = check.tenant.pk
    ctes, cte_params = [_check_sql()], check.check_params()
    counting = usage.usage_cte(tenant_pk, rows_of="k")
    if counting is not None:
        ctes.append(counting[0])
        cte_params += counting[1]
    head = f"WITH {', '.join(ctes)} SELECT k.*"
    sql = f"{head} FROM k" if select is None else f"{head}, w.* FROM k LEFT JOIN ({select}) w ON true"
    try:
        with db.contained():
            rows = db.fetch_all(sql, [*cte_params, *(params if select is not None else ())])
    except DatabaseError as exc:
        raise Unconfirmed(f"key check failed: {exc}") from exc
    if not rows:
        raise Unconfirmed("the key or its tenant changed")
    if counting is not None:
        usage.counted_as_query()
    state = model_from_row(TenantState, rows[0])
    # Past the counters, the select's columns; all NULL in the one row of a select with no rows.
    selected = [row[_STATE_COLUMNS:] for row in rows if select is not None and row[_STATE_COLUMNS] is not None]
    return state, selected
