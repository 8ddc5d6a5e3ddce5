"""Hot-path SQL: the few statements a worker runs on almost every request, prepared once per
connection on PostgreSQL.

Django's PostgreSQL backend binds parameters client-side, so the server parses and plans every
execution anew: about 150 µs for the key lookup's three-table join, against about 40 µs for the
same statement prepared. These statements therefore go through a server-binding psycopg cursor
with `prepare=True` (psycopg keeps a bounded set of prepared statements per connection and
re-prepares after a reconnect). Errors are Django's (`connection.wrap_database_errors`), so a
database outage still answers 503. Elsewhere (SQLite) Django's own cursor runs them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction


def fetch_all(sql: str, params: Sequence[Any]) -> list[tuple]:
    with _cursor() as (cursor, options):
        _execute(cursor, options, sql, params)
        return cursor.fetchall()


def fetch_one(sql: str, params: Sequence[Any], *, binary: bool = False) -> tuple | None:
    """The first row of `sql`; `binary`: in PostgreSQL's binary format (a large bytea arrives as
    its bytes, not as twice as many hex digits to decode), each bytea as a bytearray the caller
    may keep and write to (copied once from the driver's buffer, where bytes and then a writable
    copy of them would be two copies)."""
    with _cursor() as (cursor, options):
        if binary and options:
            options["binary"] = True
            cursor.adapters.register_loader("bytea", _writable_bytea_loader())
        _execute(cursor, options, sql, params)
        return cursor.fetchone()


def execute(sql: str, params: Sequence[Any]) -> int:
    """Run a statement; the number of rows it changed."""
    with _cursor() as (cursor, options):
        _execute(cursor, options, sql, params)
        return cursor.rowcount


def contained() -> contextlib.AbstractContextManager:
    """Around a statement whose failure the caller handles: a savepoint inside a transaction (so
    the failure does not break it), nothing in autocommit (as a request runs)."""
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return transaction.atomic()
    return contextlib.nullcontext()


def _execute(cursor, options: dict[str, Any], sql: str, params: Sequence[Any]) -> None:
    """Run `sql` through the connection's execute wrappers (Django's `connection.execute_wrapper`),
    as Django's own cursor does: the psycopg cursor is not Django's, and wrappers (the test suite's
    statement audit, docs/scaling.md) must see these statements too. None in production."""
    wrappers = options.pop("wrappers", None)
    if not wrappers:
        cursor.execute(sql, params, **options)
        return

    def run(sql, params, many, context):
        return cursor.execute(sql, params, **options)

    for wrapper in reversed(wrappers):
        run = functools.partial(wrapper, run)
    run(sql, params, False, {"connection": connections[DEFAULT_DB_ALIAS], "cursor": cursor})


@functools.cache
def _writable_bytea_loader() -> type:
    """psycopg's loader of a binary bytea, as a bytearray (psycopg is imported where PostgreSQL is used)."""
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    class WritableBytea(Loader):
        format = Format.BINARY

        def load(self, data) -> bytearray:
            return bytearray(data)

    return WritableBytea


@contextlib.contextmanager
def _cursor() -> Iterator[tuple[Any, dict[str, bool]]]:
    """A server-binding psycopg cursor on Django's connection (PostgreSQL), else Django's cursor."""
    # The thread's wrapper, looked up once: every attribute of django.db.connection is a lookup
    # through asgiref's Local (about a microsecond each).
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor, {}
        return
    import psycopg

    # What Django's own cursor() does first: the health check (CONN_HEALTH_CHECKS) replaces a
    # connection the server closed (a restart) before the request's first statement, not after it
    # failed. core.postgres makes it a look at the socket rather than a SELECT 1 round trip.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor, {"prepare": True, "wrappers": connection.execute_wrappers}
