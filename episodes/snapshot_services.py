"""Save, load and checkpoint services (docs/api.md §4): files in snapshots.py and checkpoint.py,
database work and cache coherence here."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from django.db import connection, transaction
from rest_framework.exceptions import ValidationError

from core.audit import audit
from core.errors import InvalidInput, QuotaExceeded, Unavailable, first_message
from memindex.serialize import to_arrays
from tenants.models import Tenant, TenantState

from . import checkpoint, snapshots
from .cache import build_index, cache
from .fastpath import fast_episodes
from .models import Episode, Tombstone
from .rows import EpisodeRow, expires_at_from, insert_episodes, row_of
from .selectors import live
from .serializers import EpisodeInput
from .services import content_hash, lock_state, now_ms

SNAPSHOT_FIELDS = ("id", "task_id", "embedding", "reward", "metadata", "timestamp", "tags", "source", "user_id",
                   "steps", "expires_at", "content_hash", "text")
CHUNK = 2000
HASH_RE = re.compile(r"[0-9a-f]{64}")


def _snapshot_line(row: tuple) -> dict[str, Any]:
    eid, task_id, emb, reward, metadata, timestamp, tags, source, user_id, steps, expires_at, digest, text = row
    return {
        "id": str(eid), "task_id": task_id,
        # float32 -> float64 is exact, and orjson's shortest repr of that double reads back to it.
        "state_embedding": np.frombuffer(bytes(emb), dtype="<f4").tolist(),
        "reward": reward, "metadata": metadata, "timestamp": timestamp, "tags": tags, "source": source,
        "user_id": user_id, "steps": steps, "expires_at": expires_at, "content_hash": digest,
        **({} if text is None else {"text": text}),
    }


def storage_unavailable(what: str, exc: OSError) -> Unavailable:
    """A 503 naming the cause (never the server's paths): the write failed and left nothing under the name."""
    return Unavailable(f"cannot write the {what}: the data directory is not writable "
                       f"({exc.strerror or type(exc).__name__})")


def snapshot_save(*, tenant: Tenant, name: str, key_prefix: str | None = None) -> int:
    """Write the tenant's live episodes, in store order, to the named snapshot; returns the count."""
    snapshots.validate_name(name)
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if connection.vendor == "postgresql" and outermost:
            # One consistent view of the tenant for the count and the rows, without blocking writers.
            connection.cursor().execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        rows = live(Episode.objects.filter(tenant=tenant), now_ms())
        count = rows.count()
        lines = (_snapshot_line(r) for r in
                 rows.order_by("seq").values_list(*SNAPSHOT_FIELDS).iterator(chunk_size=CHUNK))
        try:
            snapshots.write_snapshot(tenant.slug, name, dim=tenant.dim, count=count, episodes=lines)
        except OSError as exc:  # disk full, read-only or missing data dir: the server's fault, not the client's
            raise storage_unavailable("snapshot", exc) from None
    audit("save", tenant_id=tenant.slug, key_prefix=key_prefix, path=name, episode_count=count)
    return count


class LineValidator:
    """Snapshot lines through the store API's own validation: the fast path built from the spec
    (a chunk of lines at once), else EpisodeInput line by line, which words the first error. One
    serializer serves every line: building one per line deep-copies its fields."""

    def __init__(self, tenant: Tenant, name: str) -> None:
        self.serializer = EpisodeInput(context={"tenant": tenant})
        self.dim, self.nonzero = tenant.dim, tenant.metric == "cosine"
        self.name = name

    @staticmethod
    def _problem(raw: dict, digest: Any) -> str | None:
        """What a snapshot line needs beyond a stored episode: a well-formed hash, an id and a timestamp."""
        if digest is not None and not (isinstance(digest, str) and HASH_RE.fullmatch(digest)):
            return "content_hash: must be 64 hex digits"
        for required in ("id", "timestamp"):
            if raw.get(required) is None:
                return f"{required}: required in a snapshot"
        return None

    def _one(self, raw: dict, number: int, digest: Any) -> dict:
        where = f"path: snapshot {self.name!r} line {number}"
        problem = self._problem(raw, digest)
        if problem:
            raise InvalidInput(f"{where}: {problem}")
        try:
            return self.serializer.run_validation(raw)
        except ValidationError as exc:
            raise InvalidInput(f"{where}: {first_message(exc.detail)}") from None

    def _unique(self, episode: dict, number: int, seen: set[int] | None) -> None:
        if seen is not None:
            key = episode["id"].int
            if key in seen:
                raise InvalidInput(f"path: snapshot {self.name!r} line {number}: id: {episode['id']} appears twice")
            seen.add(key)

    def __call__(self, lines: list[tuple[int, dict, bytes]], seen: set[int] | None = None) -> list[tuple[dict, str]]:
        """Each line's validated episode and its stored content hash (or None), in order; `seen`
        collects ids to refuse a repeated one. The first bad line is the one named."""
        digests = [raw.pop("content_hash", None) for _, raw, _ in lines]
        fast = None
        if not any(self._problem(raw, digest) for (_, raw, _), digest in zip(lines, digests, strict=True)):
            fast = fast_episodes([raw for _, raw, _ in lines], dim=self.dim, nonzero=self.nonzero,
                                 check=EpisodeInput.cross_check)
        out = []
        for i, ((number, raw, _), digest) in enumerate(zip(lines, digests, strict=True)):
            episode = fast[i] if fast is not None else self._one(raw, number, digest)
            self._unique(episode, number, seen)
            out.append((episode, digest))
        return out


def _chunks(lines: Iterator[tuple[int, dict, bytes]]) -> Iterator[list[tuple[int, dict, bytes]]]:
    """Lists of up to CHUNK lines. A file error (bad JSON, wrong count) comes after the lines read
    before it, so a bad episode on an earlier line is still the error named."""
    chunk: list[tuple[int, dict, bytes]] = []
    try:
        for line in lines:
            chunk.append(line)
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
    except InvalidInput:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


def _validate_file(fh, header: snapshots.Header, *, tenant: Tenant, name: str) -> int:
    """Check every line as the store API would (plus unique ids); returns the CRC-32 of the lines."""
    seen: set[int] = set()
    validate = LineValidator(tenant, name)
    crc = 0
    for chunk in _chunks(snapshots.read_episodes(fh, header, name)):
        validate(chunk, seen)
        for _, _, line in chunk:
            crc = zlib.crc32(line, crc)
    return crc


def _row(episode: dict, digest: str | None, *, tenant_id: int, seq: int, version: int, stamp: int) -> EpisodeRow:
    """A database row from a validated snapshot episode. A ttl counts from the load's time; a line
    without expires_at or ttl_secs never expires: the tenant's default TTL is for new stores."""
    expires_at = expires_at_from(ttl_secs=episode.get("ttl_secs"), expires_at=episode.get("expires_at"),
                                 now_ms=stamp, default_ttl_secs=None)
    return row_of((episode["id"], tenant_id, seq, version, episode["task_id"],
                   episode["state_embedding"].astype("<f4").tobytes(), episode["reward"],
                   episode.get("metadata", {}), episode["timestamp"], episode.get("tags", []), episode.get("source"),
                   episode.get("user_id"), episode.get("steps"), expires_at, digest or content_hash(episode),
                   episode.get("text")))


def _open_checked(tenant: Tenant, name: str):
    fh = snapshots.open_snapshot(tenant.slug, snapshots.validate_name(name))
    try:
        header = snapshots.read_header(fh, name)
        if header.dim != tenant.dim:
            raise InvalidInput(f"path: snapshot {name!r} has dim {header.dim}, the tenant's dim is {tenant.dim}")
        if tenant.max_episodes is not None and header.episodes > tenant.max_episodes:
            raise QuotaExceeded(f"max_episodes: loading {header.episodes} episodes would exceed the tenant's "
                                f"quota of {tenant.max_episodes} episodes")
    except BaseException:
        fh.close()
        raise
    return fh, header


def snapshot_load(*, tenant: Tenant, name: str, key_prefix: str | None = None) -> int:
    """Replace the tenant's episodes with the snapshot's, in one transaction, after checking every line.

    The file is read twice from the same open file (a save replaces a name by rename, never in
    place): once to validate everything as the store API does, then inside the transaction to
    insert, converting each line through the same validation; a CRC of the lines proves the second
    pass read what the first checked. Every worker rebuilds at its next request
    because the generation changes."""
    fh, header = _open_checked(tenant, name)
    with fh:
        crc = _validate_file(fh, header, tenant=tenant, name=name)
        fh.seek(0)
        header = snapshots.read_header(fh, name)
        stamp = now_ms()
        with transaction.atomic():
            state = lock_state(tenant)
            Episode.objects.filter(tenant=tenant).delete()
            Tombstone.objects.filter(tenant=tenant).delete()
            state.version += 1
            state.generation += 1
            state.tombstone_floor = state.version
            validate = LineValidator(tenant, name)
            again = 0
            for chunk in _chunks(snapshots.read_episodes(fh, header, name)):
                batch: list[EpisodeRow] = []
                for (_, _, line), (episode, digest) in zip(chunk, validate(chunk), strict=True):
                    again = zlib.crc32(line, again)
                    batch.append(_row(episode, digest, tenant_id=tenant.pk, seq=state.next_seq,
                                      version=state.version, stamp=stamp))
                    state.next_seq += 1
                insert_episodes(batch)
            if again != crc:  # changed in place between the passes: roll everything back
                raise InvalidInput(f"path: snapshot {name!r} changed while it was being loaded")
            state.episode_count = header.episodes
            state.save(update_fields=["version", "generation", "tombstone_floor", "next_seq", "episode_count"])
    audit("load", tenant_id=tenant.slug, key_prefix=key_prefix, path=name, episode_count=header.episodes)
    return header.episodes


def snapshots_list(*, tenant: Tenant) -> list[dict]:
    return snapshots.list_snapshots(tenant.slug)


def tenant_checkpoint(*, tenant: Tenant, state: TenantState | None = None, from_database: bool = False,
                      key_prefix: str | None = None) -> int:
    """Write the tenant's index as its checkpoint: from this worker's cached index brought up to
    `state`, or (offline) freshly built from the database. Returns the episode count."""
    state = state or TenantState.objects.get(tenant=tenant)
    cached = build_index(tenant, state) if from_database else cache.current(tenant, state)
    with cached.lock:  # copy under the lock: a concurrent catch-up may move rows
        if len(cached.index) >= cached.index.quantize_from:
            cached.index.ensure_quantized()  # stored too, so a new worker's first query need not build it
        arrays, meta = to_arrays(cached.index)
        arrays = {k: v if v.flags.owndata else v.copy() for k, v in arrays.items()}  # views: copied
        generation, version = cached.generation, cached.version
    try:
        checkpoint.write_checkpoint(slug=tenant.slug, identity=checkpoint.tenant_identity(tenant), arrays=arrays,
                                    meta=meta, generation=generation, version=version)
    except OSError as exc:
        raise storage_unavailable("checkpoint", exc) from None
    audit("checkpoint", tenant_id=tenant.slug, key_prefix=key_prefix, episode_count=meta["n"])
    return meta["n"]
