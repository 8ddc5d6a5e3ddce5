"""Episode id <-> row position of a TenantIndex, in about 36 bytes per row instead of ~180.

A Python list of id strings and a dict of their positions cost a 36-character str, a dict entry
and an int object per row: 0.12x the float32 matrix at dim 384, as much as all the filter columns.
The service's ids are canonical UUID strings, so each row keeps its id as 16 bytes in a numpy
column; lookups go through a sorted copy of those keys (binary search) plus a small dict of the
keys added since that copy was last merged. Any other id string (tools, tests) sits in a plain
dict: correct for every id, compact for the ones the service stores.
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
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class IdMap:
    """Rows [0, n) each hold one distinct id. Rows only ever append at n or move last-into-hole."""

    def __init__(self, capacity: int = 16) -> None:
        self.n = 0
        self.raw = np.zeros((capacity, 16), dtype=np.uint8)  # row -> UUID bytes (zero for other ids)
        self.sorted_keys = np.empty(0, dtype=_KEY)  # merged UUID keys, ascending
        self.sorted_rows = np.empty(0, dtype=np.int32)  # their rows; -1 once removed
        self.recent: dict[bytes, int] = {}  # UUID keys added since the last merge -> row
        self.other: dict[str, int] = {}  # ids that are not canonical UUIDs -> row
        self.other_at: dict[int, str] = {}  # and row -> id

    # ----- capacity and size -----
    def grow(self, capacity: int) -> None:
        raw = np.zeros((capacity, 16), dtype=np.uint8)
        raw[: self.n] = self.raw[: self.n]
        self.raw = raw

    def __len__(self) -> int:
        return self.n

    def nbytes(self) -> int:
        # Dict entries: about 100 bytes each with their key objects.
        return (self.raw[: self.n].nbytes + self.sorted_keys.nbytes + self.sorted_rows.nbytes
                + 100 * (len(self.recent) + len(self.other)))

    # ----- lookups -----
    def _merged_row(self, key: bytes) -> int | None:
        keys = self.sorted_keys
        i = int(np.searchsorted(keys, key))
        # The bytes of slot i through the uint8 view: an S16 scalar drops trailing NUL bytes.
        if i < keys.size and keys.view(np.uint8)[16 * i : 16 * i + 16].tobytes() == key:
            row = int(self.sorted_rows[i])
            return row if row >= 0 else None
        return None

    def _slot(self, key: bytes) -> int:
        """Position of a key known to be in the sorted copy."""
        return int(np.searchsorted(self.sorted_keys, key))

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
        return other if other is not None else key_str(self.raw[row].tobytes())

    def ids_at(self, rows: Iterable[int]) -> list[str]:
        return [self.id_of(int(r)) for r in rows]

    def all(self) -> list[str]:
        return self.ids_at(range(self.n))

    # ----- changes -----
    def append(self, eid: str) -> int:
        """A new id (not present) at row n."""
        row = self.n
        key = uuid_key(eid)
        if key is None:
            self.other[eid] = row
            self.other_at[row] = eid
            self.raw[row] = 0
        else:
            self.raw[row] = np.frombuffer(key, dtype=np.uint8)
            self.recent[key] = row
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
        self.recent = {}

    def discard(self, row: int) -> None:
        """Forget the id at `row` (the row itself is then refilled by move() or dropped by pop_last())."""
        other = self.other_at.pop(row, None)
        if other is not None:
            del self.other[other]
            return
        key = self.raw[row].tobytes()
        if self.recent.pop(key, None) is None:
            self.sorted_rows[self._slot(key)] = -1

    def move(self, src: int, dst: int) -> None:
        """The id at row src now lives at row dst (dst's id was discarded)."""
        other = self.other_at.pop(src, None)
        self.raw[dst] = self.raw[src]
        if other is not None:
            self.other[other] = dst
            self.other_at[dst] = other
            return
        key = self.raw[src].tobytes()
        if key in self.recent:
            self.recent[key] = dst
        else:
            self.sorted_rows[self._slot(key)] = dst

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
            packed = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 16)
            rows = np.asarray(uuid_rows, dtype=np.int32)
            out.raw[rows] = packed
            flat = packed.view(_KEY).ravel()
            order = np.argsort(flat, kind="stable")
            out.sorted_keys, out.sorted_rows = flat[order].copy(), rows[order]
            if np.any(out.sorted_keys[1:] == out.sorted_keys[:-1]):
                raise ValueError("ids repeat")
        return out
