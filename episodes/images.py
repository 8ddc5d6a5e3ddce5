"""Packed index images of small tenants, kept in the database (IndexImage): a worker's first index
of a tenant in one read (docs/design.md, Many tenants).

A hosted deployment serves thousands of small tenants, and every worker of every replica builds
each one it serves. Building a 1,000-episode index row by row from the database costs tens of
milliseconds (the rows' conversion, the filter columns' vocabularies, the id map); loading its
packed image costs one statement and one memcpy. The first worker to build a tenant writes its
image; later ones load it and catch up from its version like any cached index (changes.py). An
image of an older generation, or older than the tenant's tombstone floor, is not used.

Images are a cache of the episodes table, never the truth: losing one costs a build."""

from __future__ import annotations

import contextlib
import logging

from django.db import DatabaseError, connection, transaction

from core import db
from memindex.index import TenantIndex
from memindex.packed import NotPackable, pack, unpack
from memindex.quantized import MIN_ROWS

from .models import IndexImage

logger = logging.getLogger("memcloud.cache")

# Tenants this small are imaged; larger ones have the int8 copy and file checkpoints (checkpoint.py).
MAX_ROWS = MIN_ROWS
_TABLE = IndexImage._meta.db_table
_READ_SQL = f"SELECT generation, version, data FROM {_TABLE} WHERE tenant_id = %s"
# Never replaces a newer image with an older one (two workers building the same tenant at once); one
# of the same version is replaced (a damaged image is rewritten by the build it caused).
_WRITE_SQL = (
    f"INSERT INTO {_TABLE} (tenant_id, generation, version, data) VALUES (%s, %s, %s, %s) "
    f"ON CONFLICT (tenant_id) DO UPDATE SET generation = excluded.generation, version = excluded.version, "
    f"data = excluded.data WHERE {_TABLE}.generation < excluded.generation OR "
    f"({_TABLE}.generation = excluded.generation AND {_TABLE}.version <= excluded.version)"
)


def load(*, tenant_pk: int, generation: int, floor: int, version: int, dim: int, metric: str,
         spill_dir: str) -> tuple[TenantIndex, int] | None:
    """The tenant's imaged index and the version it is at, when an image of this generation at a
    version in [floor, version] exists and unpacks; else None (the caller builds)."""
    try:
        row = db.fetch_one(_READ_SQL, [tenant_pk], binary=True)
    except DatabaseError as exc:
        logger.warning("index image of tenant %s not read: %s", tenant_pk, exc)
        return None
    if row is None or row[0] != generation or not floor <= row[1] <= version:
        return None
    try:
        index = unpack(row[2], spill_dir=spill_dir)
    except ValueError as exc:
        logger.warning("index image of tenant %s unusable: %s", tenant_pk, exc)
        return None
    if (index.dim, index.metric) != (dim, metric):
        return None
    return index, int(row[1])


def stored_at(tenant_pk: int) -> tuple[int, int] | None:
    """(generation, version) of the tenant's stored image, or None."""
    row = IndexImage.objects.filter(tenant_id=tenant_pk).values_list("generation", "version").first()
    return None if row is None else (row[0], row[1])


def save(*, tenant_pk: int, generation: int, version: int, index: TenantIndex) -> bool:
    """Write the index (the caller holds its lock, or no one else has it yet) as the tenant's image,
    unless a newer one is there. Never raises: an image only saves later builds."""
    if len(index) > MAX_ROWS:
        return False
    try:
        data = pack(index)
    except NotPackable:
        return False
    # Inside a transaction, a savepoint keeps a failed write from breaking it.
    contained = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    try:
        with contained:
            db.execute(_WRITE_SQL, [tenant_pk, generation, version, data])
    except DatabaseError as exc:
        logger.warning("index image of tenant %s not written: %s", tenant_pk, exc)
        return False
    return True
