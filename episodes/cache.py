"""Per-worker cache of tenant indexes, kept coherent with the database (docs/api.md §7).

The authentication query already read the tenant's (generation, version). A cached index at the
same pair is current: no database work. One at an older version of the same generation reads only
the rows and tombstones stamped after its version; anything else is rebuilt from the database.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from memindex.columns import NO_EXPIRY
from memindex.index import TenantIndex
from tenants.models import Tenant, TenantState

from . import changes, checkpoint, images
from .models import Episode

logger = logging.getLogger("memcloud.cache")

# Rows fetched at a time when building from the database. Measured at 100k: 5000-row chunks left
# a worker 4.5 MB larger after the build than 1000-row ones, and 1000-row ones 0.6 MB more than 500.
REBUILD_CHUNK = 500
try:  # glibc: return free heap pages to the OS (a build frees many row buffers between long-lived ids)
    _malloc_trim = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError):  # another libc: nothing to do
    _malloc_trim = None


@dataclass
class CachedIndex:
    index: TenantIndex
    generation: int
    version: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    size: int = 0  # nbytes() when the cache last measured it (IndexCache.used)


def _add_rows(index: TenantIndex, rows: list[tuple]) -> None:
    if not rows:
        return
    ids, seq, _version, emb, ts, reward, expires, task, source, user, tags, text = zip(*rows, strict=True)
    index.add(
        ids=[str(i) for i in ids],
        embeddings=np.frombuffer(b"".join(bytes(e) for e in emb), dtype="<f4").reshape(len(rows), index.dim),
        seq=np.asarray(seq, dtype=np.int64),
        timestamp=np.asarray(ts, dtype=np.int64),
        reward=np.asarray(reward, dtype=np.float64),
        expires_at=np.asarray([NO_EXPIRY if e is None else e for e in expires], dtype=np.int64),
        task_id=task, source=source, user_id=user, tags=tags, text=text,
    )


def build_index(tenant: Tenant, state: TenantState) -> CachedIndex:
    """A fresh index of every episode of the tenant, stamped with the (generation, version) read
    at authentication; rows committed later are harmless (the next catch-up re-reads them)."""
    index = TenantIndex(tenant.dim, tenant.metric, capacity=state.episode_count + state.episode_count // 4 + 1024,
                        spill_dir=str(settings.AGENT_MEM_DATA_DIR))  # room to catch up
    if state.episode_count >= index.quantize_from:
        index.ensure_quantized()  # now, while empty: the rows stream to the int8 copy and the row file
    batch: list[tuple] = []
    for row in Episode.objects.filter(tenant=tenant).order_by("seq").values_list(*changes.ROW_FIELDS).iterator(
        chunk_size=REBUILD_CHUNK
    ):
        batch.append(row)
        if len(batch) >= REBUILD_CHUNK:
            _add_rows(index, batch)
            batch = []
    _add_rows(index, batch)
    del batch
    index.idmap.merge()  # the ids still held in its dict of recent ones (up to n/8) cost ~150 bytes each there
    index.keyword.merge()  # postings sorted by term: a query reads slices, not a scan of the recent log
    if _malloc_trim is not None:
        _malloc_trim(0)  # measured at 100k rows: 42 MB of the build's freed buffers back to the OS
    return CachedIndex(index=index, generation=state.generation, version=state.version)


def catch_up(tenant: Tenant, cached: CachedIndex, state: TenantState) -> set[str]:
    """Apply what other workers committed after cached.version: cost follows the change, not N.
    The ids of the episodes stored, changed or removed since."""
    since = cached.version
    rows, tombs = changes.since(tenant_pk=tenant.pk, version=since)
    # An id deleted after the version we read it at stays deleted; one re-stored after its deletion lives.
    row_version = {r[0]: r[2] for r in rows}
    gone = {eid for eid, v in tombs if row_version.get(eid, -1) < v}
    cached.index.remove(eid for eid, _ in tombs)
    _add_rows(cached.index, [r for r in rows if r[0] not in gone])
    cached.version = state.version
    return {r[0] for r in rows} | {eid for eid, _ in tombs}


def from_checkpoint(tenant: Tenant, state: TenantState) -> CachedIndex:
    """The tenant's checkpoint brought up to `state`, or CheckpointUnusable saying why not."""
    manifest = checkpoint.current_manifest(tenant.slug)
    if manifest.identity != checkpoint.tenant_identity(tenant):
        raise checkpoint.CheckpointOutdated("written for an earlier tenant of the same slug")
    if manifest.generation != state.generation:
        raise checkpoint.CheckpointOutdated(f"stale generation {manifest.generation} (now {state.generation})")
    if (manifest.dim, manifest.metric) != (tenant.dim, tenant.metric):
        raise checkpoint.CheckpointUnusable(f"dim/metric {manifest.dim}/{manifest.metric} differ from the tenant's")
    if not state.tombstone_floor <= manifest.version <= state.version:
        raise checkpoint.CheckpointOutdated(
            f"version {manifest.version} outside [{state.tombstone_floor}, {state.version}]")
    cached = CachedIndex(index=checkpoint.read_checkpoint(manifest), generation=manifest.generation,
                         version=manifest.version)
    if cached.version < state.version:
        catch_up(tenant, cached, state)
    logger.info("index of %s loaded from checkpoint v%s and caught up to v%s (%d episodes)", tenant.slug,
                manifest.version, cached.version, len(cached.index))
    return cached


# An imaged index that had to catch up on more changes than this writes a fresh image.
IMAGE_REFRESH_CHANGES = 64


def from_image(tenant: Tenant, state: TenantState) -> CachedIndex:
    """A small tenant's first index in this worker: its image brought up to `state`, or, when there
    is no usable image, built from the database and written as the image for the next worker
    (once the answer is sent: images.after_answer)."""
    identity = checkpoint.tenant_identity(tenant)
    found = images.load(tenant_pk=tenant.pk, generation=state.generation, floor=state.tombstone_floor,
                        version=state.version, dim=tenant.dim, metric=tenant.metric,
                        spill_dir=str(settings.AGENT_MEM_DATA_DIR), identity=identity)
    if found is None:
        cached = build_index(tenant, state)
        images.after_answer(lambda: _save_image(tenant, cached, identity))
        return cached
    index, version = found
    cached = CachedIndex(index=index, generation=state.generation, version=version)
    if version < state.version:
        changed = catch_up(tenant, cached, state)
        if len(changed) > IMAGE_REFRESH_CHANGES:
            images.after_answer(lambda: _save_image(tenant, cached, identity))
    return cached


def _save_image(tenant: Tenant, cached: CachedIndex, identity: str) -> None:
    """Write the index as the tenant's image at the version it is at now (under its lock: another
    thread may be catching it up)."""
    with cached.lock:
        images.save(tenant_pk=tenant.pk, generation=cached.generation, version=cached.version, index=cached.index,
                    identity=identity)


def refresh_image(tenant: Tenant) -> str:
    """Write the tenant's image from the database unless the one stored is at its current state:
    "written", "current" or "too large" (the indeximages command)."""
    state = TenantState.objects.get(tenant=tenant)
    if state.episode_count >= images.MAX_ROWS:
        return "too large"
    if images.stored_at(tenant.pk) == (state.generation, state.version):
        return "current"
    cached = build_index(tenant, state)
    # The host's copy too: where the command runs beside the servers (a shared AGENT_MEM_DATA_DIR),
    # their workers' first queries then read no image from the database either.
    images.save(tenant_pk=tenant.pk, generation=cached.generation, version=cached.version, index=cached.index,
                identity=checkpoint.tenant_identity(tenant))
    return "written"


def start_index(tenant: Tenant, state: TenantState) -> CachedIndex:
    """A worker's first index of a tenant: from its checkpoint when usable, else from the database;
    a small tenant that has no checkpoint at all from its image (from_image)."""
    try:
        cached = from_checkpoint(tenant, state)
    except checkpoint.CheckpointOutdated as why:
        if state.episode_count < images.MAX_ROWS and str(why) == checkpoint.NO_CHECKPOINT:
            return from_image(tenant, state)
        if state.episode_count:
            logger.info("index of %s built from the database: checkpoint unusable (%s)", tenant.slug, why)
        return build_index(tenant, state)
    except checkpoint.CheckpointUnusable as why:  # damaged: worth an operator's attention
        logger.warning("index of %s built from the database: checkpoint unusable (%s)", tenant.slug, why)
        return build_index(tenant, state)
    return cached


class IndexCache:
    """LRU of tenant indexes under a byte budget. An index larger than half the budget is served
    but not kept, so one huge tenant cannot evict every small one."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.entries: OrderedDict[int, CachedIndex] = OrderedDict()
        self.lock = threading.Lock()
        self.evictions = 0
        self.on_change: Callable[[IndexCache], None] | None = None
        # The sum of the entries' sizes, kept as they change: summing nbytes() over every entry on
        # each keep cost milliseconds once a worker holds hundreds of small tenants.
        self.used = 0

    def bytes_used(self) -> int:
        """The entries' sizes, each as of its tenant's last access (a search may have built an int8
        copy since; the tenant's next access counts it)."""
        return self.used

    def peek(self, tenant_pk: int) -> CachedIndex | None:
        """The tenant's index as this worker holds it, at whatever version: for a query that reads
        the tenant's counters only in its last statement and then checks them (episodes/selectors.py)."""
        with self.lock:
            cached = self.entries.get(tenant_pk)
            if cached is not None:
                self.entries.move_to_end(tenant_pk)
            return cached

    def current(self, tenant: Tenant, state: TenantState) -> CachedIndex:
        """The tenant's index, brought up to the state read with this request's authentication."""
        cached = self.peek(tenant.pk)
        if cached is not None and cached.generation == state.generation and cached.version >= state.tombstone_floor:
            if cached.version < state.version:
                with cached.lock:
                    if cached.version < state.version:
                        catch_up(tenant, cached, state)
            self._measure(tenant.pk, cached)
            return cached
        if cached is not None:
            logger.info("rebuilding index of %s (generation %s -> %s)", tenant.slug, cached.generation,
                        state.generation)
        cached = start_index(tenant, state)
        self._keep(tenant, cached)
        return cached

    def _measure(self, tenant_pk: int, cached: CachedIndex) -> None:
        """Count the kept index's current size (it grows with catch-ups and its int8 copy)."""
        size = cached.index.nbytes()
        if size == cached.size:
            return
        with self.lock:
            if self.entries.get(tenant_pk) is cached:
                self.used += size - cached.size
                cached.size = size

    def _keep(self, tenant: Tenant, cached: CachedIndex) -> None:
        size = cached.index.nbytes()
        with self.lock:
            old = self.entries.pop(tenant.pk, None)
            if old is not None:
                self.used -= old.size
            if size > self.budget // 2:
                logger.warning("index of %s (%d MB) exceeds half the cache budget: not kept", tenant.slug,
                               size >> 20)
            else:
                cached.size = size
                self.entries[tenant.pk] = cached
                self.used += size
                while self.used > self.budget and len(self.entries) > 1:
                    _, evicted = self.entries.popitem(last=False)
                    self.used -= evicted.size
                    self.evictions += 1
        if self.on_change:
            self.on_change(self)

    def drop(self, tenant_pk: int) -> None:
        with self.lock:
            old = self.entries.pop(tenant_pk, None)
            if old is not None:
                self.used -= old.size

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.used = 0


cache = IndexCache(settings.AGENT_MEM_INDEX_MEMORY_MB * 1024 * 1024)
