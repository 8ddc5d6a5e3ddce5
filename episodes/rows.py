"""The one row type of a new episode and the one way rows reach the table: store, batch store and
snapshot load all build `EpisodeRow`s and insert them with `insert_episodes`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import orjson
from django.db import connection

from core import db

from .models import Episode


class EpisodeRow(NamedTuple):
    """The columns of one new episode, JSON columns as Python values. A tuple: the binary COPY
    writes it positionally, with no per-row dict or model object."""

    id: uuid.UUID
    tenant_id: int
    seq: int
    version: int
    task_id: str
    embedding: bytes  # float32 little-endian
    reward: float
    metadata: dict[str, Any]
    timestamp: int
    tags: list[str]
    source: str | None
    user_id: str | None
    steps: Any
    expires_at: int | None
    content_hash: str
    text: str | None


# How the hot paths build rows, from a tuple of every field in order: EpisodeRow(...) runs a
# Python-level __new__ (about 1 µs a row, a millisecond on a batch of 1,000), this one does not.
row_of = partial(tuple.__new__, EpisodeRow)
COPY_COLUMNS = EpisodeRow._fields
# How binary COPY sends each of COPY_COLUMNS (in its column's own binary format). A jsonb value goes
# as bytes already in jsonb's binary format (a version byte, then the JSON text): psycopg passes
# bytes through in C, where its Jsonb dumper is Python called once a value.
COPY_TYPES = ("uuid", "int8", "int8", "int8", "varchar", "bytea", "float8", "bytea", "int8", "bytea", "varchar",
              "varchar", "bytea", "int8", "varchar", "text")
_JSONB_V1 = b"\x01"
_EPISODES = Episode._meta.db_table


def expires_at_from(*, ttl_secs: int | None, expires_at: int | None, now_ms: int,
                    default_ttl_secs: int | None) -> int | None:
    """When an episode expires (ms), or None for never (docs/api.md §8.4): its own `expires_at`,
    else `ttl_secs` after `now_ms`, else the tenant's default TTL after `now_ms`, else never."""
    if expires_at is not None:
        return expires_at
    ttl = ttl_secs or default_ttl_secs
    return now_ms + ttl * 1000 if ttl else None


def _encoded(row: EpisodeRow) -> tuple:
    """A row with its JSON columns as JSON text (NULL stays NULL for steps)."""
    return (*row[:7], orjson.dumps(row.metadata).decode(), row.timestamp, orjson.dumps(row.tags).decode(),
            row.source, row.user_id, None if row.steps is None else orjson.dumps(row.steps).decode(),
            row.expires_at, row.content_hash, row.text)


def insert_episodes(rows: Sequence[EpisodeRow], *, skip_known: bool = False) -> int:
    """Insert rows in the caller's transaction; returns how many were inserted. PostgreSQL: a
    binary COPY for many rows (several times faster than a multi-row INSERT; the embedding goes as
    raw bytes, not hex-escaped text), one prepared INSERT for a few; straight from the tuples (no
    model objects, no signals). `skip_known`: a row whose (tenant, id) exists is skipped (ON
    CONFLICT DO NOTHING) instead of failing. Elsewhere: bulk_create. Database errors are Django's
    on every path, so an outage mid-insert is a 503 like any other."""
    if not rows:
        return 0
    if connection.vendor != "postgresql":
        assert not skip_known, "skip_known needs PostgreSQL"
        Episode.objects.bulk_create([Episode(**r._asdict()) for r in rows], batch_size=500)
        return len(rows)
    columns = ", ".join(COPY_COLUMNS)
    if len(rows) < 20:  # one statement per row count, prepared (core/db.py)
        values = ", ".join([f"({', '.join(['%s'] * len(COPY_COLUMNS))})"] * len(rows))
        conflict = " ON CONFLICT (tenant_id, id) DO NOTHING" if skip_known else ""
        return db.execute(f"INSERT INTO {_EPISODES} ({columns}) VALUES {values}{conflict}",
                          [v for r in rows for v in _encoded(r)])
    assert not skip_known, "COPY cannot skip known rows"
    with connection.cursor() as cursor, connection.wrap_database_errors, \
            cursor.cursor.copy(f"COPY {_EPISODES} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(COPY_TYPES)
        dumps = orjson.dumps
        for r in rows:
            copy.write_row((*r[:7], _JSONB_V1 + dumps(r[7]), r[8], _JSONB_V1 + dumps(r[9]), r[10], r[11],
                            None if r[12] is None else _JSONB_V1 + dumps(r[12]), r[13], r[14], r[15]))
    return len(rows)
