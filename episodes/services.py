"""Writes on episodes. Each service locks the tenant's TenantState row, bumps its version, stamps
what it changes and answers only after commit (see models.py for why)."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, QuerySet, Subquery

from core import db
from core.audit import audit
from core.errors import Conflict, InvalidInput, NotFound, QuotaExceeded
from core.usage import note_stored
from memindex.columns import Filters
from tenants.models import Tenant, TenantState

from .embedding import EMBEDDED_FROM_TEXT, with_embeddings
from .filtering import is_empty, matching, not_expired
from .models import Episode, Tombstone
from .restriction import narrowed, own, patchable, stamped
from .rows import EpisodeRow, expires_at_from, insert_episodes, row_of
from .spec import MAX_METADATA_BYTES

# Fields a PATCH may change; the embedding, text, id and timestamp never change (docs/api.md §8).
PATCHABLE = ("metadata", "tags", "reward", "task_id", "source", "user_id", "expires_at")
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


def content_hash(episode: dict, embedding: bytes | None = None) -> str:
    """Digest of what the client sent (docs/api.md §9): embedding as float32, tags as a set,
    timestamp only if given. `embedding`: the float32 little-endian bytes, if already at hand."""
    if embedding is None:
        embedding = episode["state_embedding"].astype("<f4").tobytes()
    canon = {
        "task_id": episode["task_id"],
        # A vector the server made from the text is not what the client sent: the text is.
        "embedding": "" if episode.get(EMBEDDED_FROM_TEXT) else embedding.hex(),
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
    if episode.get("text") is not None:  # absent otherwise: digests of episodes without text stay as they were
        canon["text"] = episode["text"]
    return hashlib.sha256(orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)).hexdigest()


def lock_state(tenant: Tenant) -> TenantState:
    """The tenant's change counter, locked until commit: writes of one tenant commit in order."""
    return TenantState.objects.select_for_update().get(tenant=tenant)


_STATE = TenantState._meta.db_table
_EPISODES = Episode._meta.db_table
# Locks the tenant's state row (as SELECT ... FOR UPDATE would) and claims n seqs in one round trip.
_CLAIM_SQL = (f"UPDATE {_STATE} SET version = version + 1, next_seq = next_seq + %s, "
              f"episode_count = episode_count + %s WHERE tenant_id = %s RETURNING version, next_seq, episode_count")
_UNCLAIM_SQL = f"UPDATE {_STATE} SET next_seq = next_seq - %s, episode_count = episode_count - %s WHERE tenant_id = %s"
_KNOWN_SQL = f"SELECT id, content_hash FROM {_EPISODES} WHERE tenant_id = %s AND id = ANY(%s::uuid[])"


def _claim(tenant: Tenant, n: int) -> tuple[int, int, int]:
    """Lock the tenant's state, bump its version and reserve n seqs and n episodes (the store gives
    back those of retries with _UNCLAIM_SQL). Returns (new version, first seq, episode count before)."""
    row = db.fetch_one(_CLAIM_SQL, [n, n, tenant.pk])
    if row is None:
        raise TenantState.DoesNotExist(f"no state for tenant {tenant.pk}")
    version, next_seq, count = row
    return version, next_seq - n, count - n


def _known_hashes(tenant: Tenant, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    if connection.vendor != "postgresql":
        return dict(Episode.objects.filter(tenant=tenant, id__in=ids).values_list("id", "content_hash"))
    # One array literal: adapting a list quotes each UUID in Python (a few ms for a batch of 1000).
    return dict(db.fetch_all(_KNOWN_SQL, [tenant.pk, "{" + ",".join(map(str, ids)) + "}"]))


def episodes_store(*, tenant: Tenant, episodes: Sequence[dict], key_prefix: str | None = None,
                   user: str | None = None) -> StoreResult:
    """Store one or more validated episodes, all or nothing; client-chosen ids make it idempotent.
    `user`: the bound user (restriction.py), stamped on every episode. Episodes given only `text`
    are embedded first, by the tenant's embedder (embedding.py)."""
    episodes = with_embeddings(tenant=tenant, episodes=stamped(episodes, user))
    stamp = now_ms()
    n = len(episodes)
    vectors = [np.asarray(e["state_embedding"], dtype="<f4").tobytes() for e in episodes]
    hashes = [content_hash(e, v) for e, v in zip(episodes, vectors, strict=True)]
    ids = [e.get("id") or uuid.uuid4() for e in episodes]
    # One new PostgreSQL row: insert first and let the unique index say whether the id is known.
    upsert = n == 1 and connection.vendor == "postgresql"
    with transaction.atomic():
        version, seq, before = _claim(tenant, n)
        if upsert:
            row = _episode_row(tenant, episodes[0], ids[0], vectors[0], hashes[0], seq, version, stamp)
            inserted = insert_episodes([row], skip_known=True) == 1
            existing = {} if inserted else _known_hashes(tenant, ids)
            created = [inserted]
        else:
            # Usually every id is new: insert them all and let the unique index say if one is not
            # (a savepoint undoes the attempt), instead of looking every id up first.
            given = [e["id"] for e in episodes if "id" in e]
            rows = [_episode_row(tenant, episodes[i], ids[i], vectors[i], hashes[i], seq + i, version, stamp)
                    for i in range(n)]
            inserted = _insert_if_all_new(rows) if given else insert_episodes(rows) == n
            existing = {} if inserted else _known_hashes(tenant, given)
            created = [i not in existing for i in ids]
        for index, (episode_id, digest) in enumerate(zip(ids, hashes, strict=True)):
            known = existing.get(episode_id)
            if known is not None and known != digest:
                where = f"episodes[{index}].id" if n > 1 else "id"
                raise Conflict(f"{where}: episode {episode_id} already exists with different content")
        fresh = created.count(True)
        if fresh and tenant.max_episodes is not None and before + fresh > tenant.max_episodes:
            raise QuotaExceeded(
                f"max_episodes: storing {fresh} more would exceed the tenant's quota of {tenant.max_episodes} "
                f"episodes ({before} stored)"
            )
        if not fresh:
            transaction.set_rollback(True)  # only retries: nothing changes, not even the version
        elif not inserted:  # some retries: insert the new ones, with consecutive seqs
            rows = []
            for index in (i for i in range(n) if created[i]):
                rows.append(_episode_row(tenant, episodes[index], ids[index], vectors[index], hashes[index],
                                         seq + len(rows), version, stamp))
            insert_episodes(rows)
            db.execute(_UNCLAIM_SQL, [n - fresh, n - fresh, tenant.pk])
    note_stored(fresh)  # metrics and usage count new episodes, not idempotent retries
    if n == 1:
        audit("store_episode", tenant_id=tenant.slug, key_prefix=key_prefix, task_id=episodes[0]["task_id"],
              episode_count=1, user_id=user)
    else:
        audit("store_episodes", tenant_id=tenant.slug, key_prefix=key_prefix, episode_count=n, user_id=user)
    return StoreResult(ids=ids, created=created)


def episode_put(*, tenant: Tenant, episode_id: uuid.UUID, episode: dict, key_prefix: str | None = None,
                user: str | None = None) -> bool:
    """Store `episode` under `episode_id`, replacing an existing one whole (docs/api.md §8.7); True if
    created. One transaction: a reader sees the old or the new content, never neither. A replace is
    stored anew (new store position, timestamp as given or now) and leaves a tombstone at the same
    version as the row, so a cached index drops the old embedding and takes the new one (cache.py
    keeps a row stamped no earlier than its tombstone). A bound `user` replaces only its own."""
    episode = with_embeddings(tenant=tenant, episodes=stamped([episode], user))[0]
    stamp = now_ms()
    vector = np.asarray(episode["state_embedding"], dtype="<f4").tobytes()
    digest = content_hash(episode, vector)
    with transaction.atomic():
        version, seq, before = _claim(tenant, 1)
        row = _episode_row(tenant, episode, episode_id, vector, digest, seq, version, stamp)
        found = Episode.objects.filter(tenant=tenant, id=episode_id).values_list("pk_id", "user_id").first()
        if found is not None and user is not None and found[1] != user:
            # Ids are unique per tenant: as a store with another user's id, a conflict that says no more.
            raise Conflict(f"id: episode {episode_id} already exists")
        if found is None:
            if tenant.max_episodes is not None and before + 1 > tenant.max_episodes:
                raise QuotaExceeded(f"max_episodes: storing 1 more would exceed the tenant's quota of "
                                    f"{tenant.max_episodes} episodes ({before} stored)")
            insert_episodes([row])
        else:
            fields = row._asdict()
            for fixed in ("id", "tenant_id"):
                fields.pop(fixed)
            Episode.objects.filter(tenant=tenant, pk_id=found[0]).update(**fields)
            Tombstone.objects.create(tenant=tenant, episode_id=episode_id, version=version)
            db.execute(_UNCLAIM_SQL, [0, 1, tenant.pk])  # the seq is the new position; the count is unchanged
    if found is None:
        note_stored(1)
    audit("put_episode", tenant_id=tenant.slug, key_prefix=key_prefix, task_id=episode["task_id"], episode_count=1,
          user_id=user)
    return found is None


def _episode_row(tenant: Tenant, episode: dict, episode_id: uuid.UUID, embedding: bytes, digest: str, seq: int,
                 version: int, stamp: int) -> EpisodeRow:
    """The row of one new episode."""
    expires_at = expires_at_from(ttl_secs=episode.get("ttl_secs"), expires_at=episode.get("expires_at"),
                                 now_ms=stamp, default_ttl_secs=tenant.default_ttl_secs)
    timestamp = episode.get("timestamp")
    return row_of((episode_id, tenant.pk, seq, version, episode["task_id"], embedding, episode["reward"],
                   episode.get("metadata", {}), stamp if timestamp is None else timestamp,
                   list(episode.get("tags", [])), episode.get("source"), episode.get("user_id"),
                   episode.get("steps"), expires_at, digest, episode.get("text")))


def _insert_if_all_new(rows: Sequence[EpisodeRow]) -> bool:
    """Insert every row, or (if the tenant already has one of their ids) none of them."""
    try:
        with transaction.atomic():  # a savepoint
            insert_episodes(rows)
    except IntegrityError:
        return False
    return True


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


def episode_delete(*, tenant: Tenant, episode_id: uuid.UUID, key_prefix: str | None = None,
                   user: str | None = None) -> int:
    with transaction.atomic():
        state = lock_state(tenant)
        removed = remove_episodes(tenant=tenant, state=state,
                                  doomed=own(Episode.objects.filter(tenant=tenant, id=episode_id), user))
    if removed:
        audit("delete_episode", tenant_id=tenant.slug, key_prefix=key_prefix, episode_count=removed, user_id=user)
    return removed


def episodes_prune_older_than(*, tenant: Tenant, cutoff_ms: int, key_prefix: str | None = None,
                              user: str | None = None) -> int:
    with transaction.atomic():
        state = lock_state(tenant)
        doomed = own(Episode.objects.filter(tenant=tenant, timestamp__lt=cutoff_ms), user)
        removed = remove_episodes(tenant=tenant, state=state, doomed=doomed)
    audit("prune_older_than", tenant_id=tenant.slug, key_prefix=key_prefix, episode_count=removed, user_id=user)
    return removed


def _prune_keep(*, tenant: Tenant, n: int, order: tuple[str, ...], op: str, key_prefix: str | None,
                user: str | None) -> int:
    with transaction.atomic():
        state = lock_state(tenant)
        # Everything after the first n in keep order; OFFSET inside the subquery, not in Python.
        # A bound user keeps n of their own episodes and removes only theirs.
        beyond = own(Episode.objects.filter(tenant=tenant), user).order_by(*order).values("pk_id")[n:]
        doomed = Episode.objects.filter(tenant=tenant, pk_id__in=Subquery(beyond))
        removed = remove_episodes(tenant=tenant, state=state, doomed=doomed)
    audit(op, tenant_id=tenant.slug, key_prefix=key_prefix, episode_count=removed, user_id=user)
    return removed


def episodes_prune_keep_newest(*, tenant: Tenant, n: int, key_prefix: str | None = None,
                               user: str | None = None) -> int:
    return _prune_keep(tenant=tenant, n=n, order=("-timestamp", "-seq"), op="prune_keep_newest",
                       key_prefix=key_prefix, user=user)


def episodes_prune_keep_highest_reward(*, tenant: Tenant, n: int, key_prefix: str | None = None,
                                       user: str | None = None) -> int:
    return _prune_keep(tenant=tenant, n=n, order=("-reward", "-timestamp", "-seq"),
                       op="prune_keep_highest_reward", key_prefix=key_prefix, user=user)


def episode_update(*, tenant: Tenant, episode_id: uuid.UUID, changes: dict,
                   key_prefix: str | None = None, user: str | None = None) -> Episode:
    """Change some fields of a live episode. The row is stamped with the new version, so every
    worker's next catch-up re-reads it and updates its filter columns in place."""
    patchable(changes, user)
    changes = dict(changes)
    merge = changes.pop("metadata_merge", None)
    unknown = set(changes) - set(PATCHABLE)
    if unknown:
        raise InvalidInput(f"{sorted(unknown)[0]}: cannot be changed")
    with transaction.atomic():
        state = lock_state(tenant)
        row = own(Episode.objects.filter(not_expired(now_ms()), tenant=tenant, id=episode_id), user).first()
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
        # Not row.save(): that names the row by its surrogate key alone, and every statement on a
        # tenant's rows names the tenant (docs/scaling.md).
        Episode.objects.filter(tenant=tenant, pk=row.pk).update(
            **{name: getattr(row, name) for name in changes}, version=row.version)
        state.save(update_fields=["version"])
    audit("update_episode", tenant_id=tenant.slug, key_prefix=key_prefix, task_id=row.task_id, episode_count=1,
          user_id=user)
    return row


def episodes_delete(*, tenant: Tenant, ids: Sequence[uuid.UUID] | None = None, filters: Filters | None = None,
                    key_prefix: str | None = None, user: str | None = None) -> int:
    """Delete live episodes by id or by filter (never an empty filter: that is a prune)."""
    if (ids is None) == (filters is None):
        raise InvalidInput("give either ids or filter")
    if filters is not None and is_empty(filters):
        raise InvalidInput("filter: an empty filter would delete every episode: use a prune")
    if filters is not None:
        filters = narrowed(filters, user, field="filter.user_id")
    with transaction.atomic():
        state = lock_state(tenant)
        doomed = own(Episode.objects.filter(not_expired(now_ms()), tenant=tenant), user)
        doomed = doomed.filter(id__in=list(ids)) if ids is not None else matching(doomed, filters)
        removed = remove_episodes(tenant=tenant, state=state, doomed=doomed)
    audit("delete_episodes", tenant_id=tenant.slug, key_prefix=key_prefix, episode_count=removed, user_id=user)
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
