"""Packed index images of small tenants, kept in the database (IndexImage): a worker's first index
of a tenant in one read (docs/design.md, Many tenants).

A hosted deployment serves thousands of small tenants, and every worker of every replica builds
each one it serves. Building a 1,000-episode index row by row from the database costs tens of
milliseconds (the rows' conversion, the filter columns' vocabularies, the id map); loading its
packed image costs one statement and one memcpy. The first worker to build a tenant writes its
image; later ones load it and catch up from its version like any cached index (changes.py). An
image of an older generation, or older than the tenant's tombstone floor, is not used.

Images are a cache of the episodes table, never the truth: losing one costs a build.

Each host also keeps a copy of the images its workers used (`AGENT_MEM_DATA_DIR/images/`, bounded by
AGENT_MEM_IMAGE_CACHE_MB, least recently used first out): a tenant evicted from a worker's cache, or
first met by the host's other workers, comes back from the page cache in a fraction of a
millisecond instead of 1.6 MB read from the database per 1,000 episodes. A copy is named by the
tenant's identity (id and creation time) and carries its (generation, version); it is used under the
same rules as the database's image."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import mmap
import os
import re
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError

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


_LOCAL_HEAD = struct.Struct("<qq")  # generation, version; then the packed index
_LOCAL_NAME = re.compile(r"[^0-9A-Za-z-]")
_CLEAN_EVERY = 64  # local writes between two checks of the copies' total size
# Linux's MADV_POPULATE_READ (5.14 on; Python 3.11's mmap module does not name it).
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22 if sys.platform == "linux" else None)
_local_writes = 0
_clean_lock = threading.Lock()


def local_path(identity: str) -> Path:
    return Path(settings.AGENT_MEM_DATA_DIR) / "images" / f"{_LOCAL_NAME.sub('-', identity)}.mcix"


def _read_local(identity: str) -> tuple[int, int, memoryview] | None:
    """The host's copy as (generation, version, packed index): a private, copy-on-write map of the
    file, so the index's columns are the page cache's pages (shared by the host's workers until
    one writes a row) and loading it copies nothing. A copy is only ever replaced whole
    (os.replace) or unlinked, never written in place, so the map keeps the contents it was made with."""
    if not settings.AGENT_MEM_IMAGE_CACHE_MB:
        return None
    try:
        with open(local_path(identity), "rb") as fh:
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
            # Marked as used: clean_local removes the least recently used copies first, so a hot
            # tenant's copy stays however many others are written after it. A copy that cannot be
            # marked (a read-only folder) is still read.
            with contextlib.suppress(OSError):
                os.utime(fh.fileno())
    except (OSError, ValueError):  # missing, unreadable, or empty (ValueError)
        return None
    if len(mapped) < _LOCAL_HEAD.size:
        return None
    if _MADV_POPULATE_READ is not None:  # the page tables filled in one call, not a fault a page
        with contextlib.suppress(OSError):  # an older kernel: faults on the first search instead
            mapped.madvise(_MADV_POPULATE_READ)
    generation, version = _LOCAL_HEAD.unpack_from(mapped)
    return generation, version, memoryview(mapped)[_LOCAL_HEAD.size :]


def _write_local(identity: str, generation: int, version: int, data: bytes | memoryview) -> None:
    """Replace the host's copy atomically (a reader sees the old one or the new one). A cache: no fsync."""
    global _local_writes
    if not settings.AGENT_MEM_IMAGE_CACHE_MB:
        return
    path = local_path(identity)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(_LOCAL_HEAD.pack(generation, version))
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("local copy of the index image %s not written: %s", identity, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()
        return
    _local_writes += 1
    if _local_writes % _CLEAN_EVERY == 0:
        clean_local()


def clean_local() -> int:
    """Remove the least recently used copies (written or read) while they exceed
    AGENT_MEM_IMAGE_CACHE_MB (down to 90 % of it); the number removed."""
    limit = settings.AGENT_MEM_IMAGE_CACHE_MB * 1024 * 1024
    folder = Path(settings.AGENT_MEM_DATA_DIR) / "images"
    with _clean_lock:
        try:
            found = [(e.stat().st_mtime, e.stat().st_size, e.path) for e in os.scandir(folder)
                     if e.name.endswith(".mcix")]
        except OSError:
            return 0
        total, removed = sum(size for _, size, _ in found), 0
        if total <= limit:
            return 0
        for _, size, path in sorted(found):
            if total <= limit * 9 // 10:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size
                removed += 1
        return removed


def _usable(generation: int, version: int, *, want: int, floor: int, at_most: int) -> bool:
    return generation == want and floor <= version <= at_most


def _unpacked(data, *, what: str, dim: int, metric: str, spill_dir: str) -> TenantIndex | None:
    try:
        index = unpack(data, spill_dir=spill_dir)
    except ValueError as exc:
        logger.warning("%s unusable: %s", what, exc)
        return None
    return index if (index.dim, index.metric) == (dim, metric) else None


def load(*, tenant_pk: int, generation: int, floor: int, version: int, dim: int, metric: str,
         spill_dir: str, identity: str | None = None) -> tuple[TenantIndex, int] | None:
    """The tenant's imaged index and the version it is at, when an image of this generation at a
    version in [floor, version] exists and unpacks (the host's copy first, given the tenant's
    `identity`, then the database's); else None (the caller builds)."""
    limits = {"want": generation, "floor": floor, "at_most": version}
    local = _read_local(identity) if identity else None
    if local is not None and _usable(local[0], local[1], **limits):
        index = _unpacked(local[2], what=f"local copy of the index image {identity}", dim=dim, metric=metric,
                          spill_dir=spill_dir)
        if index is not None:
            return index, local[1]
    try:
        row = db.fetch_one(_READ_SQL, [tenant_pk], binary=True)
    except DatabaseError as exc:
        logger.warning("index image of tenant %s not read: %s", tenant_pk, exc)
        return None
    if row is None or not _usable(row[0], row[1], **limits):
        return None
    index = _unpacked(row[2], what=f"index image of tenant {tenant_pk}", dim=dim, metric=metric, spill_dir=spill_dir)
    if index is None:
        return None
    if identity:
        _write_local(identity, row[0], row[1], row[2])
    return index, int(row[1])


def stored_at(tenant_pk: int) -> tuple[int, int] | None:
    """(generation, version) of the tenant's stored image, or None."""
    row = IndexImage.objects.filter(tenant_id=tenant_pk).values_list("generation", "version").first()
    return None if row is None else (row[0], row[1])


def save(*, tenant_pk: int, generation: int, version: int, index: TenantIndex, identity: str | None = None) -> bool:
    """Write the index (the caller holds its lock, or no one else has it yet) as the tenant's image,
    unless a newer one is there, and (given the tenant's `identity`) as the host's copy. Never
    raises: an image only saves later builds."""
    if len(index) > MAX_ROWS:
        return False
    try:
        data = pack(index)
    except NotPackable:
        return False
    try:
        with db.contained():
            db.execute(_WRITE_SQL, [tenant_pk, generation, version, data])
    except DatabaseError as exc:
        logger.warning("index image of tenant %s not written: %s", tenant_pk, exc)
        return False
    if identity:
        _write_local(identity, generation, version, data)
    return True


# Image writes a request asked for, done once its answer has been sent (write_answered): writing a
# 1,000-episode image (1.6 MB through the database's WAL, and the host's copy) was about a quarter
# of the deployment's first query of a tenant, which only needs the index it just built.
_pending: contextvars.ContextVar[list[Callable[[], object]] | None] = contextvars.ContextVar(
    "memcloud_image_writes", default=None)


def note_request(**_kwargs) -> None:
    """`request_started` receiver: this request's image writes wait for its answer."""
    _pending.set([])


def write_answered(**_kwargs) -> None:
    """`request_finished` receiver: the image writes of the request just answered. Never raises."""
    writes, _ = _pending.get(), _pending.set(None)
    for write in writes or ():
        try:
            write()
        except Exception:  # an image only saves later builds: never worth an error after the answer
            logger.exception("index image not written")


def after_answer(write: Callable[[], object]) -> None:
    """`write` once the current request's answer is sent; at once outside a request (commands, tests)."""
    writes = _pending.get()
    if writes is None:
        write()
    else:
        writes.append(write)
