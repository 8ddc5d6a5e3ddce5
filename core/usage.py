"""Per-tenant, per-minute usage for the dashboard, kept in the database so every worker's share
is seen: one upsert per authenticated /v1 request, on a row of this worker's own (`slot`), so
concurrent requests of one tenant on different workers never queue on the same row lock.

The upsert runs once the answer has been sent (Django's `request_finished`, fired when the server
closes the response): the client does not wait for the bookkeeping of its own request. A query on
PostgreSQL counts itself instead inside the statement that fetches its winners (with_usage)."""

from __future__ import annotations

import contextvars
import logging
import os
import time
from dataclasses import dataclass

from django.db import DatabaseError, connection

from core import db

from . import metrics
from .models import UsageMinute

logger = logging.getLogger("memcloud.usage")

RETENTION_MINUTES = 25 * 60  # the dashboard shows the last 24 hours at most
_CLEAN_EVERY_SECS = 300.0
_WARN_EVERY_SECS = 60.0

_TABLE = UsageMinute._meta.db_table


def _upsert_sql(rows: str) -> str:
    """The upsert of one request's usage, its row given by `rows` (VALUES or a SELECT)."""
    return (
        f"INSERT INTO {_TABLE} (tenant_id, minute, slot, user_id, requests, stores, queries) {rows} "
        f"ON CONFLICT (tenant_id, minute, slot, user_id) DO UPDATE SET requests = {_TABLE}.requests + 1, "
        f"stores = {_TABLE}.stores + excluded.stores, queries = {_TABLE}.queries + excluded.queries"
    )


# One request's row: _upsert_params()'s values, with requests = 1.
_ROW = "%s, %s, %s, %s, 1, %s, %s"
_UPSERT_SQL = _upsert_sql(f"VALUES ({_ROW})")


@dataclass
class Pending:
    stores: int = 0
    tenant_id: int | None = None  # set once the request has been answered for an authenticated tenant
    query: bool = False
    recorded: bool = False  # already counted by a statement of the request's own (with_usage)
    user_id: str = ""  # the end user of a user-bound key or token, "" for a tenant-wide key


_pending: contextvars.ContextVar[Pending | None] = contextvars.ContextVar("memcloud_usage", default=None)


def begin_request() -> None:
    _pending.set(Pending())


def note_stored(count: int) -> None:
    """Called by the store service after commit with the number of episodes newly stored."""
    if count <= 0:
        return
    metrics.STORED.inc(count)
    pending = _pending.get()
    if pending is not None:
        pending.stores += count


def acting_user(user_id: str | None) -> None:
    """Called once the request is authenticated: whose usage it is, within the tenant."""
    pending = _pending.get()
    if pending is not None:
        pending.user_id = user_id or ""


def answered(*, tenant_id: int, query: bool) -> None:
    """Called when the tenant's request has its answer: record it once the answer is sent."""
    pending = _pending.get()
    if pending is not None:
        pending.tenant_id, pending.query = tenant_id, query


def record_answered(**_kwargs) -> None:
    """`request_finished` receiver: record the request that has just been answered, if any."""
    pending = _pending.get()
    _pending.set(None)
    if pending is not None and pending.tenant_id is not None and not pending.recorded:
        record_request(tenant_id=pending.tenant_id, query=pending.query, stores=pending.stores,
                       user_id=pending.user_id)


def usage_cte(tenant_id: int, *, rows_of: str | None = None) -> tuple[str, list] | None:
    """This request's usage upsert as a data-modifying CTE named `usage`, and its parameters, where a
    statement of the request's own can count it (query_upsert_params); None otherwise. `rows_of`: a
    relation of the caller's statement; the request is counted once per row of it (one row: counted,
    none: not), else once."""
    upsert = query_upsert_params(tenant_id)
    if upsert is None:
        return None
    rows = _UPSERT_SQL if rows_of is None else _upsert_sql(f"SELECT {_ROW} FROM {rows_of}")
    return f"usage AS ({rows})", upsert


def with_usage(sql: str, params: list, *, tenant_id: int) -> tuple[str, list] | None:
    """`sql` (a SELECT) preceded by this request's usage upsert as a data-modifying CTE, so that a
    query counts itself in its own last round trip instead of one more after the answer; None
    where that cannot be (SQLite has no such CTE, or no request is being counted). The caller
    runs the result, then calls counted_as_query() (or, if it failed, runs `sql` alone)."""
    cte = usage_cte(tenant_id)
    if cte is None:
        return None
    return f"WITH {cte[0]} {sql}", [*cte[1], *params]


def query_upsert_params(tenant_id: int) -> list[int] | None:
    """The upsert's parameters for this request as a query, where a statement of its own can count
    it (a request being counted, not yet counted, that stored nothing, on PostgreSQL), else None.
    The caller runs the statement, then calls counted_as_query()."""
    pending = _pending.get()
    if pending is None or pending.recorded or pending.stores or connection.vendor != "postgresql":
        return None
    return _upsert_params(tenant_id=tenant_id, minute=int(time.time() // 60), stores=0, query=True,
                          user_id=pending.user_id)


def _upsert_params(*, tenant_id: int, minute: int, stores: int, query: bool, user_id: str = "") -> list:
    """_UPSERT_SQL's parameters: this worker's row (slot = pid) of the tenant's (and user's) minute."""
    return [tenant_id, minute, os.getpid(), user_id, stores, int(query)]


def counted_as_query() -> None:
    """The with_usage() statement ran: this request is counted, as a query answered."""
    pending = _pending.get()
    if pending is not None:
        pending.recorded = True
        _maybe_clean(int(time.time() // 60))


_last_clean = 0.0
_last_warning = 0.0


def record_request(*, tenant_id: int, query: bool, stores: int = 0, now: float | None = None,
                   user_id: str = "") -> None:
    """Add one request (and what it stored) to the tenant's current minute. Never raises: usage
    figures are not worth failing a request that has already been served."""
    now = time.time() if now is None else now
    minute = int(now // 60)
    try:
        db.execute(_UPSERT_SQL, _upsert_params(tenant_id=tenant_id, minute=minute, stores=stores, query=query,
                                               user_id=user_id))
    except DatabaseError as exc:
        warn_not_recorded(exc)
        return
    _maybe_clean(minute)


def _maybe_clean(minute: int) -> None:
    """Drop rows past the retention, at most once per _CLEAN_EVERY_SECS per worker."""
    global _last_clean
    if time.monotonic() - _last_clean < _CLEAN_EVERY_SECS:
        return
    _last_clean = time.monotonic()
    try:
        UsageMinute.objects.filter(minute__lt=minute - RETENTION_MINUTES).delete()
    except DatabaseError as exc:
        warn_not_recorded(exc)


def warn_not_recorded(exc: Exception) -> None:
    global _last_warning
    if time.monotonic() - _last_warning >= _WARN_EVERY_SECS:
        _last_warning = time.monotonic()
        logger.warning("usage not recorded: %s", exc)
