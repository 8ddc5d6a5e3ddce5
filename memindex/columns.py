"""The filter columns of an index: store order, timestamps, rewards, expiry, vocabulary codes and
tag bits, and the one boolean mask a query's filters become.

Filters become one mask applied before the top-k selection, so a selective filter still yields
min(k, matches) results (docs/api.md §4). Rows live in a prefix [0, n) of capacity-sized columns,
in the index's row order; the index passes n in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import scratch
from .idmap import IdMap

NO_EXPIRY = np.iinfo(np.int64).max
BITSET_TAGS = 256  # tags with codes below this live in a per-row bitset; rarer ones in posting sets
WORDS = BITSET_TAGS // 64  # bitset words a row in a checkpoint
# Vocabulary codes of the task, source and user columns: int16 in memory while they fit (2 bytes a
# row each instead of 4), int32 in checkpoints.
CODE_COLUMNS = ("task", "source", "user")


@dataclass(frozen=True)
class Filters:
    min_reward: float | None = None
    tags_any: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()
    task_id_prefix: str | None = None
    source: str | None = None
    user_id: str | None = None
    time_after: int | None = None
    time_before: int | None = None


class Vocab:
    """String -> small int code; codes are never reused (the index is rebuilt on a new generation)."""

    def __init__(self, strings: Sequence[str] = ()) -> None:
        self.strings: list[str] = list(map(str, strings))
        self._codes: dict[str, int] | None = None

    @property
    def codes(self) -> dict[str, int]:
        """Built on first use: a loaded image's vocabularies (one task id per episode is common)
        cost a cold query their dict only when a filter or a write needs one."""
        if self._codes is None:
            self._codes = dict(zip(self.strings, range(len(self.strings)), strict=True))
        return self._codes

    def code(self, value: str) -> int:
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.strings)
            self.strings.append(value)
        return code

    def codes_with_prefix(self, prefix: str) -> np.ndarray:
        return np.fromiter((c for s, c in self.codes.items() if s.startswith(prefix)), dtype=np.int32)


class FilterColumns:
    """Per-row filter columns of `capacity` rows, their vocabularies and rare-tag posting sets."""

    def __init__(self, capacity: int) -> None:
        self.tasks, self.sources, self.users, self.tags = Vocab(), Vocab(), Vocab(), Vocab()
        self.rare: dict[int, set[str]] = {}  # tag code >= BITSET_TAGS -> ids carrying it
        self.row_rare: dict[str, tuple[int, ...]] = {}  # id -> its rare tag codes
        self.expiring = 0  # rows [0, n) whose expiry is not NO_EXPIRY
        self.expires: np.ndarray | None = None  # expiry per row; None while no row ever had one
        # Zeroed (calloc'd) pages: headroom beyond n costs no memory until rows land there. Rows >= n
        # are never read, and write() sets every column of a new row.
        self.seq = np.zeros(capacity, dtype=np.int64)  # store order (row positions are not)
        self.timestamp = np.zeros(capacity, dtype=np.int64)
        self.reward = np.zeros(capacity, dtype=np.float64)
        # int16 until a vocabulary outgrows it (fit_codes)
        self.task = np.zeros(capacity, dtype=code_dtype(0))
        self.source = np.zeros(capacity, dtype=code_dtype(0))
        self.user = np.zeros(capacity, dtype=code_dtype(0))
        # Tag bits word-major: a tag filter reads one contiguous word per row, not every row's 32 bytes.
        # As many words, as wide, as the tag vocabulary needs (tag_layout; _tag_row widens).
        words, dtype = tag_layout(0)
        self.tagwords = np.zeros((words, capacity), dtype=dtype)
        self.capacity = capacity

    def _row_columns(self) -> tuple[np.ndarray, ...]:
        """The one-dimensional per-row columns held now (expires only once a row had an expiry)."""
        columns = (self.seq, self.timestamp, self.reward, self.expires, self.task, self.source, self.user)
        return tuple(c for c in columns if c is not None)

    def grow(self, capacity: int, n: int) -> None:
        """Room for `capacity` rows, rows [0, n) kept."""
        for name in ("seq", "timestamp", "reward", "expires", *CODE_COLUMNS):
            old = getattr(self, name)
            if old is not None:
                new = np.zeros(capacity, dtype=old.dtype)
                new[:n] = old[:n]
                setattr(self, name, new)
        tagwords = np.zeros((self.tagwords.shape[0], capacity), dtype=self.tagwords.dtype)
        tagwords[:, :n] = self.tagwords[:, :n]
        self.tagwords = tagwords
        self.capacity = capacity

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._row_columns()) + self.tagwords.nbytes

    # ----- writes -----
    def write(self, rows: np.ndarray, known: np.ndarray, fresh: np.ndarray, ids: Sequence[str],
              seq: np.ndarray, timestamp: np.ndarray, reward: np.ndarray, expires_at: np.ndarray,
              task_id: Sequence[str], source: Sequence[str | None], user_id: Sequence[str | None],
              tags: Sequence[Sequence[str]]) -> None:
        """Row rows[i] gets the values at i (an id given twice: last wins). `known` are the distinct
        rows that held these ids before, `fresh[i]` marks the first position of each new id."""
        expiring_before = 0 if self.expires is None else int(np.count_nonzero(self.expires[known] != NO_EXPIRY))
        self.seq[rows] = seq
        self.timestamp[rows] = timestamp
        self.reward[rows] = reward
        expires_at = np.asarray(expires_at, dtype=np.int64)
        if self.expires is None and (expires_at != NO_EXPIRY).any():
            self.expires = np.full(self.capacity, NO_EXPIRY, dtype=np.int64)
        if self.expires is not None:
            self.expires[rows] = expires_at
            touched = distinct(rows)  # an id given twice is one row, written last-wins
            self.expiring += int(np.count_nonzero(self.expires[touched] != NO_EXPIRY)) - expiring_before
        task_codes = [self.tasks.code(t) for t in task_id]
        source_codes = [-1 if v is None else self.sources.code(v) for v in source]
        user_codes = [-1 if v is None else self.users.code(v) for v in user_id]
        self.fit_codes()
        self.task[rows] = task_codes
        self.source[rows] = source_codes
        self.user[rows] = user_codes
        for i, row in enumerate(rows.tolist()):
            if not fresh[i]:
                self.forget_rare(ids[i])
            bits, rare = self._tag_row(tags[i])
            self.tagwords[:, row] = bits
            if rare:
                self.note_rare(ids[i], rare)

    def fit_codes(self) -> None:
        """Give each vocabulary code column the width its vocabulary needs (code_dtype): in write(),
        int32 once a vocabulary outgrows int16; after a checkpoint load (int32), int16 where it fits."""
        for name, vocab in zip(CODE_COLUMNS, (self.tasks, self.sources, self.users), strict=True):
            column = getattr(self, name)
            dtype = code_dtype(len(vocab.strings))
            if column.dtype != dtype:
                setattr(self, name, column.astype(dtype))

    def _tag_row(self, tags: Sequence[str]) -> tuple[np.ndarray, tuple[int, ...]]:
        codes = [self.tags.code(tag) for tag in tags]
        rare = tuple(code for code in codes if code >= BITSET_TAGS)
        words, dtype = tag_layout(len(self.tags.strings))  # the vocabulary only grows: only wider
        if words > self.tagwords.shape[0] or dtype != self.tagwords.dtype:
            wider = np.zeros((words, self.capacity), dtype=dtype)
            wider[: self.tagwords.shape[0]] = self.tagwords
            self.tagwords = wider
        bits = np.zeros(self.tagwords.shape[0], dtype=np.uint64)
        for code in codes:
            if code < BITSET_TAGS:
                bits[code >> 6] |= np.uint64(1) << np.uint64(code & 63)
        return bits, rare

    def note_rare(self, eid: str, codes: tuple[int, ...]) -> None:
        self.row_rare[eid] = codes
        for code in codes:
            self.rare.setdefault(code, set()).add(eid)

    def forget_rare(self, eid: str) -> None:
        for code in self.row_rare.pop(eid, ()):
            self.rare[code].discard(eid)

    def remove(self, eid: str, row: int, last: int) -> None:
        """Row `row` (id `eid`) goes: the last row moves into its place."""
        self.forget_rare(eid)
        if self.expires is not None:
            self.expiring -= int(self.expires[row] != NO_EXPIRY)
        if row != last:
            for column in self._row_columns():
                column[row] = column[last]
            self.tagwords[:, row] = self.tagwords[:, last]

    # ----- reads -----
    def _tag_mask(self, tag: str, n: int, idmap: IdMap) -> np.ndarray | None:
        """Rows carrying `tag`, or None when no row can (unknown tag)."""
        code = self.tags.codes.get(tag)
        if code is None:
            return None
        if code < BITSET_TAGS:
            word = self.tagwords[code >> 6, :n]
            # The word's bits into a reused buffer (a fresh one is a new mapping: scratch.py); a
            # Python int takes the word's width.
            bits = np.bitwise_and(word, 1 << (code & 63), out=scratch.buffer("tag bits", word.size, word.dtype))
            return bits != 0
        mask = np.zeros(n, dtype=bool)
        holders = self.rare.get(code, ())
        if holders:
            rows = idmap.find(list(holders))
            mask[rows[rows >= 0]] = True  # holders are live ids; -1 would mark the last row
        return mask

    def mask(self, flt: Filters, now_ms: int, n: int, idmap: IdMap) -> np.ndarray | None:
        """One boolean mask of rows [0, n) for all filters; None when nothing filters (every row
        matches). `idmap` finds the rows of rare tags' holders."""
        mask: np.ndarray | None = None

        def both(extra: np.ndarray) -> None:
            nonlocal mask
            mask = extra if mask is None else (mask & extra)

        def nothing() -> np.ndarray:
            return np.zeros(n, dtype=bool)

        if self.expiring:
            both(self.expires[:n] > now_ms)
        if flt.min_reward is not None:
            both(self.reward[:n] >= flt.min_reward)
        if flt.time_after is not None:
            both(self.timestamp[:n] >= flt.time_after)
        if flt.time_before is not None:
            both(self.timestamp[:n] <= flt.time_before)
        for value, vocab, column in ((flt.source, self.sources, self.source),
                                     (flt.user_id, self.users, self.user)):
            if value is not None:
                code = vocab.codes.get(value)
                both(nothing() if code is None else column[:n] == code)
        if flt.task_id_prefix:
            codes = self.tasks.codes_with_prefix(flt.task_id_prefix)
            both(np.isin(self.task[:n], codes) if codes.size else nothing())
        if flt.tags_any:
            any_mask = None
            for tag in flt.tags_any:
                tag_mask = self._tag_mask(tag, n, idmap)  # a new array: it may take the others in place
                if tag_mask is not None:
                    any_mask = tag_mask if any_mask is None else np.logical_or(any_mask, tag_mask, out=any_mask)
            both(nothing() if any_mask is None else any_mask)
        for tag in flt.tags_all:
            tag_mask = self._tag_mask(tag, n, idmap)
            both(nothing() if tag_mask is None else tag_mask)
        return mask

    def check(self, capacity: int, n: int, idmap: IdMap) -> None:
        """Raise AssertionError unless the columns agree with each other and with the id map."""

        def require(ok: bool, what: str) -> None:
            if not ok:
                raise AssertionError(f"filter columns: {what}")

        require(self.capacity == capacity, f"capacity {self.capacity}, index capacity {capacity}")
        require(all(c.shape == (capacity,) for c in self._row_columns()), "a column is not capacity rows long")
        require(self.tagwords.shape == (tag_layout(len(self.tags.strings))[0], capacity)
                and self.tagwords.dtype == tag_layout(len(self.tags.strings))[1], "tag words of another layout")
        for name, vocab in zip(CODE_COLUMNS, (self.tasks, self.sources, self.users), strict=True):
            require(getattr(self, name).dtype == code_dtype(len(vocab.strings)), f"{name} codes of another width")
        expiring = 0 if self.expires is None else int(np.count_nonzero(self.expires[:n] != NO_EXPIRY))
        require(self.expiring == expiring, f"{self.expiring} rows counted as expiring, {expiring} are")
        postings = {(code, eid) for code, holders in self.rare.items() for eid in holders}
        require(postings == {(code, eid) for eid, codes in self.row_rare.items() for code in codes},
                "rare tag postings disagree with the rows' rare tags")
        require(all(eid in idmap for eid in self.row_rare), "a removed id keeps rare tags")


def tag_layout(tags: int) -> tuple[int, type]:
    """Bitset words a row, and their type, for a vocabulary of this many tags: one 32-bit word up
    to 32 tags, then 64-bit words, as many as the bitset's first BITSET_TAGS tags need."""
    return max(1, (min(tags, BITSET_TAGS) + 63) // 64), (np.uint32 if tags <= 32 else np.uint64)


def code_dtype(vocabulary: int) -> type:
    """The width of a vocabulary code column: int16 while every code (and -1 for none) fits."""
    return np.int16 if vocabulary <= np.iinfo(np.int16).max else np.int32


def distinct(rows: np.ndarray) -> np.ndarray:
    """The distinct values of an int array (np.unique would import numpy.ma: 0.5 MB per worker)."""
    rows = np.sort(rows)
    return rows[np.concatenate(([True], rows[1:] != rows[:-1]))] if rows.size else rows
