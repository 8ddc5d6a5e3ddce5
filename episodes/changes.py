"""What changed in a tenant after a version: the two reads of a cache catch-up (SPEC section 7).

Statements written once and prepared (memcloud/db.py): a catch-up runs on the request that finds
its index behind, so its cost is the reader's latency. The ORM would compile both queries and
convert every value on each call, which costs more than the rows of a small change themselves.
"""

from __future__ import annotations

import uuid
from functools import lru_cache

import orjson
from django.db import connection

from memcloud import db

from .models import Episode, Tombstone

# The columns of a changed row, in the order cache._add_rows takes them.
ROW_FIELDS = ("id", "seq", "version", "embedding", "timestamp", "reward", "expires_at", "task_id",
              "source", "user_id", "tags")


@lru_cache(maxsize=4)
def _rows_sql(vendor: str) -> str:
    q = connection.ops.quote_name
    columns = ", ".join(f"{q(c)}::text" if vendor == "postgresql" and c == "tags" else q(c) for c in ROW_FIELDS)
    return (f"SELECT {columns} FROM {q(Episode._meta.db_table)} WHERE {q('tenant_id')} = %s AND {q('version')} > %s "
            f"ORDER BY {q('version')}, {q('seq')}")


@lru_cache(maxsize=4)
def _tombstones_sql(vendor: str) -> str:
    q = connection.ops.quote_name
    return (f"SELECT {q('episode_id')}, {q('version')} FROM {q(Tombstone._meta.db_table)} "
            f"WHERE {q('tenant_id')} = %s AND {q('version')} > %s")


def uuid_str(value) -> str:
    """A UUID column as the canonical string (SQLite keeps 32 hex digits, PostgreSQL a uuid)."""
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(value))


def rows_since(*, tenant_pk: int, version: int) -> list[tuple]:
    """Rows stamped after `version` (stored or changed since), ROW_FIELDS each, in commit order."""
    out = []
    for row in db.fetch_all(_rows_sql(connection.vendor), [tenant_pk, version]):
        eid, *middle, tags = row
        out.append((uuid_str(eid), *middle, orjson.loads(tags)))
    return out


def tombstones_since(*, tenant_pk: int, version: int) -> list[tuple[str, int]]:
    """(episode id, version of its removal) for removals after `version`."""
    return [(uuid_str(eid), v) for eid, v in db.fetch_all(_tombstones_sql(connection.vendor), [tenant_pk, version])]
