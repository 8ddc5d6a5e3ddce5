"""The one TTL-to-expiry rule and the one insert path (episodes/rows.py)."""

from __future__ import annotations

import uuid

import pytest

from episodes.models import Episode
from episodes.rows import COPY_COLUMNS, EpisodeRow, expires_at_from, insert_episodes

NOW = 1_700_000_000_000


@pytest.mark.parametrize(("ttl_secs", "expires_at", "default", "expected"), [
    (None, None, None, None),                   # never expires
    (60, None, None, NOW + 60_000),             # its own TTL
    (None, NOW + 5, None, NOW + 5),             # its own expiry
    (None, None, 30, NOW + 30_000),             # the tenant's default
    (60, None, 30, NOW + 60_000),               # its own TTL over the default
    (None, NOW + 5, 30, NOW + 5),               # its own expiry over the default
])
def test_expires_at_from(ttl_secs, expires_at, default, expected):
    assert expires_at_from(ttl_secs=ttl_secs, expires_at=expires_at, now_ms=NOW, default_ttl_secs=default) == expected


def test_the_row_is_the_table_columns():
    fields = {f.attname for f in Episode._meta.concrete_fields}
    assert set(COPY_COLUMNS) <= fields
    assert fields - set(COPY_COLUMNS) == {"pk_id"}  # the only column the database fills itself


@pytest.mark.parametrize("n", [3, 25])  # a few: one INSERT (on PostgreSQL); many: the binary COPY
def test_inserted_rows_read_back(tenant, n):
    t, _ = tenant
    rows = [EpisodeRow(uuid.uuid4(), t.pk, 100 + i, 7, f"task-{i}", bytes(range(32)), 0.5 + i,
                       {"k": i, "nested": {"a": [1, 2]}, "é": "✓"}, NOW + i, ["x", "y"], "src" if i % 2 else None,
                       None, None if i % 2 else [{"step": i}], None if i % 3 else NOW + 9, f"{i:064x}",
                       None if i % 2 else f"text {i}: é ✓")
            for i in range(n)]
    assert insert_episodes(rows) == n
    stored = {e.id: e for e in Episode.objects.filter(tenant=t)}
    for row in rows:
        episode = stored[row.id]
        got = EpisodeRow(**{name: getattr(episode, name) for name in COPY_COLUMNS})
        assert got._replace(embedding=bytes(got.embedding)) == row


@pytest.mark.parametrize("n", [3, 25])
def test_a_database_error_is_djangos_on_every_path(tenant, n):
    """Django's exception (so the one error table answers it), not the driver's: the COPY path
    included (snapshot load's own COPY once raised psycopg's errors unwrapped)."""
    from django.db import IntegrityError, transaction

    t, _ = tenant
    rows = [EpisodeRow(uuid.uuid4(), t.pk, i, 1, "task", b"\0" * 32, 0.0, {}, NOW, [], None, None, None, None,
                       "0" * 64, None) for i in range(n)]
    insert_episodes(rows)
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_episodes(rows)  # the same (tenant, id) again
