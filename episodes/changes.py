"""What changed in a tenant after a version: the read of a cache catch-up (docs/api.md §7).

One statement written once and prepared (memcloud/db.py): a catch-up runs on the request that finds
its index behind, so its cost is the reader's latency. The ORM would compile the query and convert
every value on each call, which costs more than the rows of a small change themselves; rows and
tombstones used to be two statements, one round trip more.
"""

from __future__ import annotations

import uuid
from functools import lru_cache

import orjson
from django.db import connection

from core import db

from .models import Episode, Tombstone

# The columns of a changed row, in the order cache._add_rows takes them.
ROW_FIELDS = ("id", "seq", "version", "embedding", "timestamp", "reward", "expires_at", "task_id",
              "source", "user_id", "tags", "text")


@lru_cache(maxsize=4)
def _changes_sql(vendor: str) -> str:
    """The rows stamped after a version, then the tombstones, in one statement (one round trip and
    one snapshot): a first column tells them apart, a tombstone's columns are its episode's id and
    its version, NULL elsewhere."""
    q = connection.ops.quote_name
    columns = ", ".join(f"{q(c)}::text" if vendor == "postgresql" and c == "tags" else q(c) for c in ROW_FIELDS)
    gaps = ", ".join("NULL" for _ in ROW_FIELDS[3:])
    since = f"WHERE {q('tenant_id')} = %s AND {q('version')} > %s"
    return (f"SELECT 0, {columns} FROM {q(Episode._meta.db_table)} {since} "
            f"UNION ALL SELECT 1, {q('episode_id')}, NULL, {q('version')}, {gaps} FROM {q(Tombstone._meta.db_table)} "
            f"{since} ORDER BY 1, 4, 3")


def uuid_str(value) -> str:
    """A UUID column as the canonical string (SQLite keeps 32 hex digits, PostgreSQL a uuid)."""
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(value))


def since(*, tenant_pk: int, version: int) -> tuple[list[tuple], list[tuple[str, int]]]:
    """What changed after `version`: the rows stamped since (stored or changed, ROW_FIELDS each, in
    commit order) and the removals since, (episode id, version of its removal) each."""
    rows, tombstones = [], []
    for kind, eid, *middle, tags, text in db.fetch_all(_changes_sql(connection.vendor), [tenant_pk, version] * 2):
        if kind == 0:
            rows.append((uuid_str(eid), *middle, orjson.loads(tags), text))
        else:
            tombstones.append((uuid_str(eid), middle[1]))
    return rows, tombstones
