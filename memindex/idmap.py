"""Episode id <-> row position of a TenantIndex, in about 24 bytes per row instead of ~180.

A Python list of id strings and a dict of their positions cost a 36-character str, a dict entry
and an int object per row: 0.12x the float32 matrix at dim 384, as much as all the filter columns.
The service's ids are canonical UUID strings, so their 16 bytes live in one sorted numpy array
(binary search finds an id's row) beside each key's row, and each row keeps the slot of its key
(4 bytes); the keys added since the last merge sit in a small dict. Any other id string (tools,
tests) sits in a plain dict: correct for every id, compact for the ones the service stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

_KEY = np.dtype("S16")  # compared as 16 raw bytes; read back through the uint8 view (S strips NULs)
MERGE_FROM = 1024  # recent keys held in a dict before they are merged into the sorted copy


def uuid_key(eid: str) -> bytes | None:
    """The 16 bytes of a canonical (lowercase, hyphenated) UUID string; None for any other id."""
    if len(eid) != 36 or eid[8] != "-" or eid[13] != "-" or eid[18] != "-" or eid[23] != "-":
        return None
    digits = eid.replace("-", "")
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        return None
    # fromhex also takes upper case and spaces: only the canonical spelling round-trips.
    return raw if len(raw) == 16 and raw.hex() == digits else None


def key_str(raw: bytes) -> str:
    return _hyphenated(raw.hex())


def _hyphenated(h: str) -> str:
    """32 hex digits as a canonical UUID string."""
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class IdMap:
    """Rows [0, n) each hold one distinct id. Rows only ever append at n or move last-into-hole.

    A UUID row is either recent (its key in `recent` and `recent_at`) or merged: its key sits at
    slot pos[row] of the sorted copy, whose sorted_rows[slot] is the row (-1 once removed)."""

    def __init__(self, capacity: int = 16) -> None:
        self.n = 0
        self.pos = np.zeros(capacity, dtype=np.int32)  # row -> slot in the sorted copy (merged rows)
        self.sorted_keys = np.empty(0, dtype=_KEY)  # merged UUID keys, ascending
        self.sorted_rows = np.empty(0, dtype=np.int32)  # their rows; -1 once removed
        self.recent: dict[bytes, int] = {}  # UUID keys added since the last merge -> row
        self.recent_at: dict[int, bytes] = {}  # and row -> key
        self.other: dict[str, int] = {}  # ids that are not canonical UUIDs -> row
        self.other_at: dict[int, str] = {}  # and row -> id

    # ----- capacity and size -----
    def grow(self, capacity: int) -> None:
        pos = np.zeros(capacity, dtype=np.int32)
        pos[: self.n] = self.pos[: self.n]
        self.pos = pos

    def __len__(self) -> int:
        return self.n

    def nbytes(self) -> int:
        # Dict entries: about 100 bytes each with their key objects (recent keys are in two).
        return (self.pos[: self.n].nbytes + self.sorted_keys.nbytes + self.sorted_rows.nbytes
                + 100 * (2 * len(self.recent) + len(self.other)))

    # ----- lookups -----
    def _key_at(self, slot: int) -> bytes:
        # Through the uint8 view: an S16 scalar drops trailing NUL bytes.
        return self.sorted_keys.view(np.uint8)[16 * slot : 16 * slot + 16].tobytes()

    def _merged_row(self, key: bytes) -> int | None:
        keys = self.sorted_keys
        i = int(np.searchsorted(keys, key))
        if i < keys.size and self._key_at(i) == key:
            row = int(self.sorted_rows[i])
            return row if row >= 0 else None
        return None

    def get(self, eid: str) -> int | None:
        key = uuid_key(eid)
        if key is None:
            return self.other.get(eid)
        row = self.recent.get(key)
        return row if row is not None else self._merged_row(key)

    def __contains__(self, eid: str) -> bool:
        return self.get(eid) is not None

    def find(self, ids: Sequence[str]) -> np.ndarray:
        """Rows of many ids at once (-1 for absent ones): one binary search for the UUID keys."""
        rows = np.full(len(ids), -1, dtype=np.int64)
        keys, at = [], []
        for i, eid in enumerate(ids):
            key = uuid_key(eid)
            if key is None:
                rows[i] = self.other.get(eid, -1)
                continue
            row = self.recent.get(key)
            if row is not None:
                rows[i] = row
            else:
                keys.append(key)
                at.append(i)
        if keys and self.sorted_keys.size:
            wanted = np.array(keys, dtype=_KEY)
            slots = np.minimum(np.searchsorted(self.sorted_keys, wanted), self.sorted_keys.size - 1)
            hit = self.sorted_keys[slots] == wanted
            rows[np.asarray(at)[hit]] = self.sorted_rows[slots[hit]]
        return rows

    def id_of(self, row: int) -> str:
        other = self.other_at.get(row)
        if other is not None:
            return other
        key = self.recent_at.get(row)
        return key_str(key if key is not None else self._key_at(int(self.pos[row])))

    def ids_at(self, rows: Iterable[int]) -> list[str]:
        return [self.id_of(int(r)) for r in rows]

    def all(self) -> list[str]:
        """Every row's id in row order (merged keys gathered in one go: checkpoints want all)."""
        n = self.n
        if not self.sorted_keys.size:
            return self.ids_at(range(n))
        merged = self.sorted_keys.view(np.uint8).reshape(-1, 16)[np.minimum(self.pos[:n], self.sorted_keys.size - 1)]
        digits = merged.tobytes().hex()
        out = [_hyphenated(digits[32 * i : 32 * i + 32]) for i in range(n)]
        for row in (*self.recent_at, *self.other_at):
            out[row] = self.id_of(row)
        return out

    # ----- changes -----
    def append(self, eid: str) -> int:
        """A new id (not present) at row n."""
        row = self.n
        key = uuid_key(eid)
        if key is None:
            self.other[eid] = row
            self.other_at[row] = eid
        else:
            self.recent[key] = row
            self.recent_at[row] = key
        self.n += 1
        if len(self.recent) >= max(MERGE_FROM, self.sorted_keys.size // 8):
            self.merge()
        return row

    def merge(self) -> None:
        """Fold the recent keys into the sorted copy, dropping removed ones: O(n), amortised by
        merging only when the recent dict has grown by a fraction of n."""
        live = self.sorted_rows >= 0
        keys, rows = self.sorted_keys[live], self.sorted_rows[live]
        if self.recent:
            new_keys = np.array(list(self.recent), dtype=_KEY)
            new_rows = np.fromiter(self.recent.values(), dtype=np.int32, count=len(self.recent))
            order = np.argsort(new_keys, kind="stable")
            new_keys, new_rows = new_keys[order], new_rows[order]
            at = np.searchsorted(keys, new_keys)
            keys, rows = np.insert(keys, at, new_keys), np.insert(rows, at, new_rows)
        self.sorted_keys, self.sorted_rows = keys, rows
        self.pos[rows] = np.arange(rows.size, dtype=np.int32)
        self.recent, self.recent_at = {}, {}

    def discard(self, row: int) -> None:
        """Forget the id at `row` (the row itself is then refilled by move() or dropped by pop_last())."""
        other = self.other_at.pop(row, None)
        if other is not None:
            del self.other[other]
            return
        key = self.recent_at.pop(row, None)
        if key is not None:
            del self.recent[key]
        else:
            self.sorted_rows[self.pos[row]] = -1

    def move(self, src: int, dst: int) -> None:
        """The id at row src now lives at row dst (dst's id was discarded)."""
        other = self.other_at.pop(src, None)
        if other is not None:
            self.other[other] = dst
            self.other_at[dst] = other
            return
        key = self.recent_at.pop(src, None)
        if key is not None:
            self.recent[key] = dst
            self.recent_at[dst] = key
        else:
            slot = self.pos[src]
            self.sorted_rows[slot] = dst
            self.pos[dst] = slot

    def pop_last(self) -> None:
        self.n -= 1

    @classmethod
    def from_ids(cls, ids: Sequence[str]) -> IdMap:
        """A map of rows 0.. to these ids; ValueError when one repeats."""
        out = cls(max(len(ids), 16))
        uuid_rows, keys = [], []
        for row, eid in enumerate(ids):
            key = uuid_key(eid)
            if key is None:
                if eid in out.other:
                    raise ValueError("ids repeat")
                out.other[eid] = row
                out.other_at[row] = eid
            else:
                uuid_rows.append(row)
                keys.append(key)
        out.n = len(ids)
        if keys:
            flat = np.frombuffer(b"".join(keys), dtype=_KEY)
            rows = np.asarray(uuid_rows, dtype=np.int32)
            order = np.argsort(flat, kind="stable")
            out.sorted_keys, out.sorted_rows = flat[order].copy(), rows[order]
            if np.any(out.sorted_keys[1:] == out.sorted_keys[:-1]):
                raise ValueError("ids repeat")
            out.pos[out.sorted_rows] = np.arange(rows.size, dtype=np.int32)
        return out

    def keys_in_row_order(self) -> np.ndarray | None:
        """Every row's 16-byte key, (n, 16) uint8 in row order, when every id is a canonical UUID
        (merging the recent ones first); None otherwise. What a packed index stores instead of the
        id strings (memindex/packed.py)."""
        if self.other:
            return None
        if self.recent:
            self.merge()
        if not self.n:
            return np.zeros((0, 16), dtype=np.uint8)
        return self.sorted_keys.view(np.uint8).reshape(-1, 16)[self.pos[: self.n]]

    @classmethod
    def from_keys(cls, keys: np.ndarray) -> IdMap:
        """The inverse of keys_in_row_order: rows 0.. holding these keys; ValueError when one repeats.
        One argsort, no per-id Python work (from_ids parses each id string)."""
        n = int(keys.shape[0])
        out = cls(max(n, 16))
        out.n = n
        if n:
            flat = np.ascontiguousarray(keys, dtype=np.uint8).view(_KEY).reshape(-1)
            order = np.argsort(flat, kind="stable")
            out.sorted_keys, out.sorted_rows = flat[order].copy(), order.astype(np.int32)
            if np.any(out.sorted_keys[1:] == out.sorted_keys[:-1]):
                raise ValueError("ids repeat")
            out.pos[out.sorted_rows] = np.arange(n, dtype=np.int32)
        return out
