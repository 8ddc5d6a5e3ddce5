"""Writes on episodes. Each service locks the tenant's TenantState row, bumps its version, stamps
what it changes and answers only after commit (see models.py for why)."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, QuerySet, Subquery

from memcloud.errors import Conflict, InvalidInput, NotFound, QuotaExceeded
from ops.audit import audit
from ops.usage import note_stored
from tenants.models import Tenant

from .filtering import is_empty, matching, not_expired
from .index import Filters
from .models import Episode, TenantState, Tombstone

# Fields a PATCH may change; the embedding, id and timestamp never change (SPEC section 8).
PATCHABLE = ("metadata", "tags", "reward", "task_id", "source", "user_id", "expires_at")
MAX_METADATA_BYTES = 64 * 1024
EXPIRE_CHUNK = 1000

# A removal larger than this rebuilds caches (new generation) instead of writing tombstones.
BULK_REMOVAL = 5000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class StoreResult:
    ids: list[uuid.UUID]
    created: list[bool]

    @property
    def any_created(self) -> bool:
        return any(self.created)


def content_hash(episode: dict) -> str:
    """Digest of what the client sent (SPEC section 9): embedding as float32, tags as a set,
    timestamp only if given."""
    canon = {
        "task_id": episode["task_id"],
        "embedding": episode["state_embedding"].astype("<f4").tobytes().hex(),
        "reward": episode["reward"],
        "metadata": episode.get("metadata", {}),
        "timestamp": episode.get("timestamp"),
        "tags": sorted(episode.get("tags", [])),
        "source": episode.get("source"),
        "user_id": episode.get("user_id"),
        "steps": episode.get("steps"),
        "expires_at": episode.get("expires_at"),
        "ttl_secs": episode.get("ttl_secs"),
    }
    return hashlib.sha256(orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)).hexdigest()


def lock_state(tenant: Tenant) -> TenantState:
    """The tenant's change counter, locked until commit: writes of one tenant commit in order."""
    return TenantState.objects.select_for_update().get(tenant=tenant)


def episodes_store(*, tenant: Tenant, episodes: Sequence[dict], key_prefix: str | None = None) -> StoreResult:
    """Store one or more validated episodes, all or nothing; client-chosen ids make it idempotent."""
    stamp = now_ms()
    hashes = [content_hash(e) for e in episodes]
    ids = [e.get("id") or uuid.uuid4() for e in episodes]
    with transaction.atomic():
        state = lock_state(tenant)
        given = [e["id"] for e in episodes if "id" in e]
        existing = dict(
            Episode.objects.filter(tenant=tenant, id__in=given).values_list("id", "content_hash")
        ) if given else {}
        created = []
        for index, (episode_id, digest) in enumerate(zip(ids, hashes, strict=True)):
            known = existing.get(episode_id)
            if known is not None and known != digest:
                where = f"episodes[{index}].id" if len(episodes) > 1 else "id"
                raise Conflict(f"{where}: episode {episode_id} already exists with different content")
            created.append(known is None)
        fresh = created.count(True)
        if fresh and tenant.max_episodes is not None and state.episode_count + fresh > tenant.max_episodes:
            raise QuotaExceeded(
                f"max_episodes: storing {fresh} more would exceed the tenant's quota of {tenant.max_episodes} "
                f"episodes ({state.episode_count} stored)"
            )
        if fresh:
            state.version += 1
            rows = []
            for episode, episode_id, digest, new in zip(episodes, ids, hashes, created, strict=True):
                if not new:
                    continue
                rows.append(_episode_row(tenant, state, episode, episode_id, digest, stamp))
                state.next_seq += 1
            insert_episodes(rows)
            state.episode_count += fresh
            state.save(update_fields=["version", "next_seq", "episode_count"])
    note_stored(created.count(True))  # metrics and usage count new episodes, not idempotent retries
    if len(episodes) == 1:
        audit("store_episode", tenant_id=tenant.slug, key_prefix=key_prefix, task_id=episodes[0]["task_id"],
              episode_count=1)
    else:
        audit("store_episodes", tenant_id=tenant.slug, key_prefix=key_prefix, episode_count=len(episodes))
    return StoreResult(ids=ids, created=created)


def _episode_row(tenant: Tenant, state: TenantState, episode: dict, episode_id: uuid.UUID, digest: str,
                 stamp: int) -> Episode:
    expires_at = episode.get("expires_at")
    ttl = episode.get("ttl_secs") or (None if expires_at is not None else tenant.default_ttl_secs)
    if expires_at is None and ttl:
        expires_at = stamp + ttl * 1000
    return Episode(
        id=episode_id, tenant=tenant, seq=state.next_seq, version=state.version,
        task_id=episode["task_id"], embedding=episode["state_embedding"].astype("<f4").tobytes(),
        reward=episode["reward"], metadata=episode.get("metadata", {}),
        timestamp=episode["timestamp"] if episode.get("timestamp") is not None else stamp,
        tags=list(episode.get("tags", [])), source=episode.get("source"), user_id=episode.get("user_id"),
        steps=episode.get("steps"), expires_at=expires_at, content_hash=digest,
    )


COPY_COLUMNS = ("id", "tenant_id", "seq", "version", "task_id", "embedding", "reward", "metadata", "timestamp",
                "tags", "source", "user_id", "steps", "expires_at", "content_hash")


def insert_episodes(rows: Sequence[Episode]) -> None:
    """Insert new rows in the caller's transaction: COPY on PostgreSQL (several times faster than
    a multi-row INSERT for large batches), bulk_create elsewhere."""
    if connection.vendor != "postgresql" or len(rows) < 20:
        Episode.objects.bulk_create(rows, batch_size=500)
        return
    table = connection.ops.quote_name(Episode._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in COPY_COLUMNS)
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row((
                r.id, r.tenant_id, r.seq, r.version, r.task_id, r.embedding, r.reward, orjson.dumps(r.metadata).decode(),
                r.timestamp, orjson.dumps(r.tags).decode(), r.source, r.user_id,
                None if r.steps is None else orjson.dumps(r.steps).decode(), r.expires_at, r.content_hash,
            ))


def remove_episodes(*, tenant: Tenant, state: TenantState, doomed: QuerySet) -> int:
    """Delete the rows of `doomed` inside the caller's transaction (state locked) and tell every cache:
    tombstones for a few, a new generation (rebuild) for many."""
    ids = list(doomed.values_list("id", flat=True))
    if not ids:
        return 0
    state.version += 1
    Episode.objects.filter(tenant=tenant, id__in=ids).delete() if len(ids) <= BULK_REMOVAL else doomed.delete()
    if len(ids) > BULK_REMOVAL:
        state.generation += 1
        # Every cache rebuilds, so older tombstones are no longer needed.
        Tombstone.objects.filter(tenant=tenant).delete()
        state.tombstone_floor = state.version
    else:
        Tombstone.objects.bulk_create(
            [Tombstone(tenant=tenant, episode_id=i, version=state.version) for i in ids], batch_size=1000
        )
    state.episode_count -= len(ids)
    state.save(update_fields=["version", "generation", "episode_count", "tombstone_floor"])
    return len(ids)


def episode_delete(*, tenant: Tenant, episode_id: uuid.UUID, key_prefix: str | None = None) -> int:
    with transaction.atomic():
        state = lock_state(tenant)
        removed = remove_episodes(tenant=tenant, state=state,
                                  doomed=Episode.objects.filter(tenant=tenant, id=episode_id))
    if removed:
        audit("delete_episode", tenant_id=tenant.slug, key_prefix=key_prefix, episode_count=removed)
    return removed


def episodes_prune_older_than(*, tenant: Tenant, cutoff_ms: int, key_prefix: str | None = None) -> int:
    with transaction.atomic():
        state = lock_state(tenant)
        removed = remove_episodes(tenant=tenant, state=state,
                                  doomed=Episode.objects.filter(tenant=tenant, timestamp__lt=cutoff_ms))
    audit("prune_older_than", tenant_id=tenant.slug, key_prefix=key_prefix, episode_count=removed)
    return removed


def _prune_keep(*, tenant: Tenant, n: int, order: tuple[str, ...], op: str, key_prefix: str | None) -> int:
    with transaction.atomic():
        state = lock_state(tenant)
        # Everything after the first n in keep order; OFFSET inside the subquery, not in Python.
        beyond = Episode.objects.filter(tenant=tenant).order_by(*order).values("pk_id")[n:]
        doomed = Episode.objects.filter(tenant=tenant, pk_id__in=Subquery(beyond))
        removed = remove_episodes(tenant=tenant, state=state, doomed=doomed)
    audit(op, tenant_id=tenant.slug, key_prefix=key_prefix, episode_count=removed)
    return removed


def episodes_prune_keep_newest(*, tenant: Tenant, n: int, key_prefix: str | None = None) -> int:
    return _prune_keep(tenant=tenant, n=n, order=("-timestamp", "-seq"), op="prune_keep_newest",
                       key_prefix=key_prefix)


def episodes_prune_keep_highest_reward(*, tenant: Tenant, n: int, key_prefix: str | None = None) -> int:
    return _prune_keep(tenant=tenant, n=n, order=("-reward", "-timestamp", "-seq"),
                       op="prune_keep_highest_reward", key_prefix=key_prefix)


def episode_update(*, tenant: Tenant, episode_id: uuid.UUID, changes: dict,
                   key_prefix: str | None = None) -> Episode:
    """Change some fields of a live episode. The row is stamped with the new version, so every
    worker's next catch-up re-reads it and updates its filter columns in place."""
    changes = dict(changes)
    merge = changes.pop("metadata_merge", None)
    unknown = set(changes) - set(PATCHABLE)
    if unknown:
        raise InvalidInput(f"{sorted(unknown)[0]}: cannot be changed")
    with transaction.atomic():
        state = lock_state(tenant)
        row = Episode.objects.filter(not_expired(now_ms()), tenant=tenant, id=episode_id).first()
        if row is None:
            raise NotFound(f"episode {episode_id} not found")
        if merge is not None:
            merged = {**row.metadata, **merge}  # shallow: top-level keys replace
            if len(orjson.dumps(merged)) > MAX_METADATA_BYTES:
                raise InvalidInput(f"metadata_merge: the merged metadata would exceed {MAX_METADATA_BYTES} bytes")
            changes["metadata"] = merged
        for name, value in changes.items():
            setattr(row, name, list(value) if name == "tags" else value)
        state.version += 1
        row.version = state.version
        row.save(update_fields=[*changes, "version"])
        state.save(update_fields=["version"])
    audit("update_episode", tenant_id=tenant.slug, key_prefix=key_prefix, task_id=row.task_id, episode_count=1)
    return row


def episodes_delete(*, tenant: Tenant, ids: Sequence[uuid.UUID] | None = None, filters: Filters | None = None,
                    key_prefix: str | None = None) -> int:
    """Delete live episodes by id or by filter (never an empty filter: that is a prune)."""
    if (ids is None) == (filters is None):
        raise InvalidInput("give either ids or filter")
    if filters is not None and is_empty(filters):
        raise InvalidInput("filter: an empty filter would delete every episode: use a prune")
    with transaction.atomic():
        state = lock_state(tenant)
        doomed = Episode.objects.filter(not_expired(now_ms()), tenant=tenant)
        doomed = doomed.filter(id__in=list(ids)) if ids is not None else matching(doomed, filters)
        removed = remove_episodes(tenant=tenant, state=state, doomed=doomed)
    audit("delete_episodes", tenant_id=tenant.slug, key_prefix=key_prefix, episode_count=removed)
    return removed


def episodes_expire(*, at_ms: int | None = None, chunk: int = EXPIRE_CHUNK, max_chunks: int | None = None) -> int:
    """Physically remove expired episodes of every tenant, `chunk` rows per transaction (short
    locks; tombstones, so caches drop them at their next catch-up). Returns how many went."""
    at = now_ms() if at_ms is None else at_ms
    expired = Episode.objects.filter(tenant=OuterRef("pk"), expires_at__lte=at)
    total, chunks = 0, 0
    for tenant in Tenant.objects.filter(Exists(expired)).order_by("pk"):
        removed_here = 0
        while max_chunks is None or chunks < max_chunks:
            with transaction.atomic():
                state = lock_state(tenant)
                pks = list(Episode.objects.filter(tenant=tenant, expires_at__lte=at)
                           .order_by("expires_at").values_list("pk_id", flat=True)[:chunk])
                removed = remove_episodes(tenant=tenant, state=state,
                                          doomed=Episode.objects.filter(tenant=tenant, pk_id__in=pks))
            chunks += 1
            removed_here += removed
            if removed < chunk:
                break
        if removed_here:
            audit("expire", tenant_id=tenant.slug, key_prefix=None, episode_count=removed_here)
        total += removed_here
        if max_chunks is not None and chunks >= max_chunks:
            break
    return total
