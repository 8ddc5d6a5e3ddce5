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
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections


def fetch_all(sql: str, params: Sequence[Any]) -> list[tuple]:
    with _cursor() as (cursor, options):
        cursor.execute(sql, params, **options)
        return cursor.fetchall()


def fetch_one(sql: str, params: Sequence[Any]) -> tuple | None:
    with _cursor() as (cursor, options):
        cursor.execute(sql, params, **options)
        return cursor.fetchone()


def execute(sql: str, params: Sequence[Any]) -> int:
    """Run a statement; the number of rows it changed."""
    with _cursor() as (cursor, options):
        cursor.execute(sql, params, **options)
        return cursor.rowcount


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
        yield cursor, {"prepare": True}
