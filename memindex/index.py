"""Per-tenant in-memory index: exact filtered top-k over a contiguous float32 matrix.

numpy, the standard library and the int8 copy (quantized.py): arrays in, arrays out. Rows live in a prefix [0, n) of
capacity-sized columns; a removal moves the last row into the hole, so store order is kept in the
`seq` column rather than in row positions. Filters become one boolean mask applied before the
top-k selection, so a selective filter still yields min(k, matches) results (SPEC section 4).

Search in two steps: a fast scan picks candidates (float32 BLAS, or the int8 copy for large
tenants), then the candidates get their exact scores (float64 sums of the float32 rows, rounded to
float32) and the SPEC tie-break. Every candidate set is a proven superset of the exact top k.

Where the float32 rows live: in memory (`emb`) for a small tenant; once the int8 copy exists, in a
RowStore (rowstore.py: a file read with pread, outside the worker's memory), since then only the
candidates' rows are ever read. Invariant: `quant is None` <=> `rows is None` <=> `emb is not None`
<=> `sqnorm is not None` (a quantized index has its squared norms in `quant`, for l2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from . import scratch
from .idmap import IdMap
from .quantized import MIN_ROWS, QuantizedColumns, stored_columns
from .rowstore import READ_CHUNK, RowStore

NO_EXPIRY = np.iinfo(np.int64).max
BITSET_TAGS = 256  # tags with codes below this live in a per-row bitset; rarer ones in posting sets
_WORDS = BITSET_TAGS // 64
GATHER_FRACTION = 0.25  # below this share of matching rows, score only the matching rows
INT8_FRACTION = 0.05  # before the int8 copy exists, filters matching fewer rows than this gather float32 rows
NARROW_FROM = 256  # more int8 candidates than this (and than 4 k) get a float32 pass before float64
# Vocabulary codes of the task, source and user columns: int16 in memory while they fit (2 bytes a
# row each instead of 4), int32 in checkpoints.
_CODE_COLUMNS = ("task", "source", "user")
RERANK_FIRST = 8  # int8 candidates scored exactly first, beyond k, to prune the rest (index._rerank)
# The per-row columns of an index and their dtypes (what a checkpoint stores).
ARRAY_COLUMNS: dict[str, np.dtype] = {
    "emb": np.dtype(np.float32), "sqnorm": np.dtype(np.float32), "seq": np.dtype(np.int64),
    "timestamp": np.dtype(np.int64), "reward": np.dtype(np.float64), "expires": np.dtype(np.int64),
    "task": np.dtype(np.int32), "source": np.dtype(np.int32), "user": np.dtype(np.int32),
    "tagbits": np.dtype(np.uint64),
}


def quant_columns(metric: str) -> dict[str, np.dtype]:
    """The int8 copy's columns (quantized.QuantizedColumns) of an index of this metric, stored as
    quant_<name> when it was built."""
    return {name: np.dtype(QuantizedColumns.DTYPES[name]) for name in stored_columns(metric)}


def _column_shapes(dim: int, n: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {name: (n,) for name in ARRAY_COLUMNS}
    shapes["emb"] = (n, dim)
    shapes["tagbits"] = (n, _WORDS)
    return shapes


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


class _Vocab:
    """String -> small int code; codes are never reused (the index is rebuilt on a new generation)."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.strings: list[str] = []

    def code(self, value: str) -> int:
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.strings)
            self.strings.append(value)
        return code

    def codes_with_prefix(self, prefix: str) -> np.ndarray:
        return np.fromiter((c for s, c in self.codes.items() if s.startswith(prefix)), dtype=np.int32)


class TenantIndex:
    def __init__(self, dim: int, metric: str = "cosine", capacity: int = 0, quantize_from: int = MIN_ROWS,
                 spill_dir: str | None = None) -> None:
        if metric not in ("cosine", "l2", "dot"):
            raise ValueError(f"unknown metric {metric!r}")
        self.dim = dim
        self.metric = metric
        self.idmap = IdMap()  # row <-> episode id; its row count is the index's (idmap.py)
        self._tasks, self._sources, self._users, self._tags = _Vocab(), _Vocab(), _Vocab(), _Vocab()
        self._rare: dict[int, set[str]] = {}  # tag code >= BITSET_TAGS -> ids carrying it
        self._row_rare: dict[str, tuple[int, ...]] = {}
        self._expiring = 0
        self.quant: QuantizedColumns | None = None  # built lazily once the tenant is large enough
        self.rows: RowStore | None = None  # the float32 rows once the int8 copy exists
        self.emb: np.ndarray | None = None
        self.expires: np.ndarray | None = None  # expiry per row; None while no row ever had one
        self.sqnorm: np.ndarray | None = None  # squared norms; none once quantized (quant has l2's)
        self.row_sq_max = 0.0  # the largest squared norm ever stored: a bound for _narrow
        self.quantize_from = quantize_from
        self.spill_dir = spill_dir  # where a RowStore's private file goes (None: the system's temp dir)
        self._alloc(max(capacity, 16))

    # ----- storage -----
    def _alloc(self, capacity: int) -> None:
        old = self.__dict__.get("seq")
        n = self.n

        def grow(name: str, shape: tuple[int, ...], dtype) -> None:
            # Zeroed (calloc'd) pages: headroom beyond n costs no memory until rows land there.
            # Rows >= n are never read, and add() writes every column of a new row.
            new = np.zeros(shape, dtype=dtype)
            if old is not None:
                new[:n] = getattr(self, name)[:n]
            setattr(self, name, new)

        if self.rows is None:
            grow("emb", (capacity, self.dim), np.float32)
            grow("sqnorm", (capacity,), np.float32)
        else:
            self.rows.grow(capacity, n)
        grow("seq", (capacity,), np.int64)
        grow("timestamp", (capacity,), np.int64)
        grow("reward", (capacity,), np.float64)
        if self.__dict__.get("expires") is not None:
            grow("expires", (capacity,), np.int64)
        for name in _CODE_COLUMNS:  # int16 until a vocabulary outgrows it (_fit_codes)
            grow(name, (capacity,), _code_dtype(0) if old is None else getattr(self, name).dtype)
        # Tag bits word-major: a tag filter reads one contiguous word per row, not every row's 32 bytes.
        # As many words, as wide, as the tag vocabulary needs (_tag_layout; _tag_row widens).
        if old is None:
            words, dtype = _tag_layout(0)
            self.tagwords = np.zeros((words, capacity), dtype=dtype)
        else:
            tagwords = np.zeros((self.tagwords.shape[0], capacity), dtype=self.tagwords.dtype)
            tagwords[:, :n] = self.tagwords[:, :n]
            self.tagwords = tagwords
        if self.__dict__.get("quant") is not None:
            self.quant.grow(capacity, n)
        self.idmap.grow(capacity)
        self.capacity = capacity

    def nbytes(self) -> int:
        arrays = [a for a in (self.sqnorm, self.seq, self.timestamp, self.reward, self.expires,
                              self.task, self.source, self.user, self.tagwords) if a is not None]
        # With a RowStore the float32 rows are in the page cache (shared, reclaimable), not here.
        rows = self.emb.nbytes if self.rows is None else self.rows.nbytes() + self.quant.nbytes()
        return sum(a.nbytes for a in arrays) + rows + self.idmap.nbytes()

    def _tag_row(self, tags: Sequence[str]) -> tuple[np.ndarray, tuple[int, ...]]:
        codes = [self._tags.code(tag) for tag in tags]
        rare = tuple(code for code in codes if code >= BITSET_TAGS)
        words, dtype = _tag_layout(len(self._tags.strings))  # the vocabulary only grows: only wider
        if words > self.tagwords.shape[0] or dtype != self.tagwords.dtype:
            wider = np.zeros((words, self.capacity), dtype=dtype)
            wider[: self.tagwords.shape[0]] = self.tagwords
            self.tagwords = wider
        bits = np.zeros(self.tagwords.shape[0], dtype=np.uint64)
        for code in codes:
            if code < BITSET_TAGS:
                bits[code >> 6] |= np.uint64(1) << np.uint64(code & 63)
        return bits, rare

    def add(
        self,
        ids: Sequence[str],
        embeddings: np.ndarray,
        seq: np.ndarray,
        timestamp: np.ndarray,
        reward: np.ndarray,
        expires_at: np.ndarray,
        task_id: Sequence[str],
        source: Sequence[str | None],
        user_id: Sequence[str | None],
        tags: Sequence[Sequence[str]],
    ) -> None:
        """Insert rows, or update the filter columns of ids already present (embeddings are immutable)."""
        m = len(ids)
        if m == 0:
            return
        emb = np.asarray(embeddings, dtype=np.float32).reshape(m, self.dim)
        rows = self.idmap.find(ids)
        known = _distinct(rows[rows >= 0])
        expiring_before = 0 if self.expires is None else int(np.count_nonzero(self.expires[known] != NO_EXPIRY))
        new_at = np.flatnonzero(rows < 0).tolist()  # positions of ids not in the index
        first: dict[str, int] = {}  # new id -> its first position in this call
        for i in new_at:
            first.setdefault(ids[i], i)
        first_new = self.n
        if self.n + len(first) > self.capacity:
            self._alloc(max(self.n + len(first), int(self.capacity * 1.5) + 16))
        fresh = np.zeros(m, dtype=bool)
        for eid, i in first.items():
            fresh[i] = True
            first[eid] = self.idmap.append(eid)
        for i in new_at:  # repeats of a new id update its new row
            rows[i] = first[ids[i]]
        # Column writes in bulk; embeddings only for new rows (they never change), which are rows
        # [first_new, n) in order.
        self._set_vectors(first_new, emb[fresh])
        self.seq[rows] = seq
        self.timestamp[rows] = timestamp
        self.reward[rows] = reward
        expires_at = np.asarray(expires_at, dtype=np.int64)
        if self.expires is None and (expires_at != NO_EXPIRY).any():
            self.expires = np.full(self.capacity, NO_EXPIRY, dtype=np.int64)
        if self.expires is not None:
            self.expires[rows] = expires_at
            touched = _distinct(rows)  # an id given twice is one row, written last-wins
            self._expiring += int(np.count_nonzero(self.expires[touched] != NO_EXPIRY)) - expiring_before
        task_codes = [self._tasks.code(t) for t in task_id]
        source_codes = [-1 if v is None else self._sources.code(v) for v in source]
        user_codes = [-1 if v is None else self._users.code(v) for v in user_id]
        self._fit_codes()
        self.task[rows] = task_codes
        self.source[rows] = source_codes
        self.user[rows] = user_codes
        for i, row in enumerate(rows.tolist()):
            if not fresh[i]:
                self._forget_rare(ids[i])
            bits, rare = self._tag_row(tags[i])
            self.tagwords[:, row] = bits
            if rare:
                eid = ids[i]
                self._row_rare[eid] = rare
                for code in rare:
                    self._rare.setdefault(code, set()).add(eid)

    def _fit_codes(self) -> None:
        """Give each vocabulary code column the width its vocabulary needs (_code_dtype): in add(),
        int32 once a vocabulary outgrows int16; after a checkpoint load (int32), int16 where it fits."""
        for name, vocab in zip(_CODE_COLUMNS, (self._tasks, self._sources, self._users), strict=True):
            column = getattr(self, name)
            dtype = _code_dtype(len(vocab.strings))
            if column.dtype != dtype:
                setattr(self, name, column.astype(dtype))

    def _set_vectors(self, start: int, vectors: np.ndarray) -> None:
        """Rows [start, start + len(vectors)) get these vectors (normalised for cosine)."""
        if not len(vectors):
            return
        if self.metric == "cosine":
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = (vectors / np.where(norms > 0, norms, 1)).astype(np.float32, copy=False)
        stop = start + len(vectors)
        sq = np.einsum("ij,ij->i", vectors, vectors)
        self.row_sq_max = max(self.row_sq_max, float(sq.max()))
        if self.rows is None:
            self.sqnorm[start:stop] = sq
            self.emb[start:stop] = vectors
        else:  # streamed: to the row file and the int8 copy, never a whole float32 matrix
            self.rows.append(start, vectors)
            self.quant.set_rows(start, vectors)

    def _forget_rare(self, eid: str) -> None:
        for code in self._row_rare.pop(eid, ()):
            self._rare[code].discard(eid)

    def remove(self, ids: Iterable[str]) -> int:
        removed = 0
        for eid in ids:
            row = self.idmap.get(eid)
            if row is None:
                continue
            self.idmap.discard(row)
            removed += 1
            self._forget_rare(eid)
            if self.expires is not None:
                self._expiring -= int(self.expires[row] != NO_EXPIRY)
            last = self.n - 1
            if self.rows is not None:
                self.rows.release(row)
            if row != last:
                if self.rows is not None:
                    self.quant.move(last, row)
                    self.rows.move(last, row)
                self.idmap.move(last, row)
                for column in (self.emb, self.sqnorm, self.seq, self.timestamp, self.reward, self.expires,
                               self.task, self.source, self.user):
                    if column is not None:
                        column[row] = column[last]
                self.tagwords[:, row] = self.tagwords[:, last]
            self.idmap.pop_last()
        return removed

    @property
    def n(self) -> int:
        """Rows in the index: [0, n) of every column."""
        return self.idmap.n

    def __len__(self) -> int:
        return self.idmap.n

    def __contains__(self, eid: str) -> bool:
        return eid in self.idmap

    @property
    def ids(self) -> list[str]:
        """Every row's id, in row order (a new list: O(n))."""
        return self.idmap.all()

    def ids_at(self, rows: Iterable[int]) -> list[str]:
        return self.idmap.ids_at(rows)

    # ----- search -----
    def _tag_mask(self, tag: str) -> np.ndarray | None:
        """Rows carrying `tag`, or None when no row can (unknown tag)."""
        code = self._tags.codes.get(tag)
        if code is None:
            return None
        if code < BITSET_TAGS:
            word = self.tagwords[code >> 6, : self.n]
            # The word's bits into a reused buffer (a fresh one is a new mapping: scratch.py); a
            # Python int takes the word's width.
            bits = np.bitwise_and(word, 1 << (code & 63), out=scratch.buffer("tag bits", word.size, word.dtype))
            return bits != 0
        mask = np.zeros(self.n, dtype=bool)
        holders = self._rare.get(code, ())
        if holders:
            rows = self.idmap.find(list(holders))
            mask[rows[rows >= 0]] = True  # holders are live ids; -1 would mark the last row
        return mask

    def mask(self, flt: Filters, now_ms: int) -> np.ndarray | None:
        """One boolean mask for all filters; None when nothing filters (every row matches)."""
        n = self.n
        mask: np.ndarray | None = None

        def both(extra: np.ndarray) -> None:
            nonlocal mask
            mask = extra if mask is None else (mask & extra)

        def nothing() -> np.ndarray:
            return np.zeros(n, dtype=bool)

        if self._expiring:
            both(self.expires[:n] > now_ms)
        if flt.min_reward is not None:
            both(self.reward[:n] >= flt.min_reward)
        if flt.time_after is not None:
            both(self.timestamp[:n] >= flt.time_after)
        if flt.time_before is not None:
            both(self.timestamp[:n] <= flt.time_before)
        for value, vocab, column in ((flt.source, self._sources, self.source),
                                     (flt.user_id, self._users, self.user)):
            if value is not None:
                code = vocab.codes.get(value)
                both(nothing() if code is None else column[:n] == code)
        if flt.task_id_prefix:
            codes = self._tasks.codes_with_prefix(flt.task_id_prefix)
            both(np.isin(self.task[:n], codes) if codes.size else nothing())
        if flt.tags_any:
            any_mask = None
            for tag in flt.tags_any:
                tag_mask = self._tag_mask(tag)  # a new array: it may take the others in place
                if tag_mask is not None:
                    any_mask = tag_mask if any_mask is None else np.logical_or(any_mask, tag_mask, out=any_mask)
            both(nothing() if any_mask is None else any_mask)
        for tag in flt.tags_all:
            tag_mask = self._tag_mask(tag)
            both(nothing() if tag_mask is None else tag_mask)
        return mask

    def prepare_query(self, query: np.ndarray) -> np.ndarray:
        q = np.asarray(query, dtype=np.float32).reshape(self.dim)
        if self.metric == "cosine":
            norm = float(np.linalg.norm(q))
            q = q / norm if norm > 0 else q
        return np.ascontiguousarray(q, dtype=np.float32)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored float32 rows (normalised for cosine), from memory or the row file."""
        return self.emb[rows] if self.rows is None else self.rows.read(rows)

    def _chunked(self, rows: np.ndarray, score) -> np.ndarray:
        """score(matrix) over the rows' vectors, READ_CHUNK rows at a time when they come from the file."""
        if self.rows is None or rows.size <= READ_CHUNK:
            return score(self.vectors(rows))
        return np.concatenate([score(self.rows.read(rows[a : a + READ_CHUNK]))
                               for a in range(0, rows.size, READ_CHUNK)])

    def scores(self, q: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        """Fast float32 (BLAS) scores of `rows` (all rows when None), higher is better. Their last
        bits depend on how BLAS blocks the matrix, so they only choose candidates (see exact_scores)."""
        if rows is None and self.rows is None:
            dots = self.emb[: self.n] @ q
        else:
            rows = np.arange(self.n) if rows is None else rows
            dots = self._chunked(rows, lambda matrix: matrix @ q)
        if self.metric != "l2":
            return dots
        column = self.sqnorm if self.rows is None else self.quant.sq32  # float32 of the exact sums
        sq = column[: self.n] if rows is None else column[rows]
        dist2 = np.maximum(sq - 2.0 * dots + np.float32(np.dot(q, q)), 0.0)
        return -np.sqrt(dist2, dtype=np.float32)

    def exact_scores(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The reported scores: each row on its own in float64, rounded to float32, so equal rows
        score equal wherever they sit and ties fall to the SPEC tie-break, not to rounding."""
        q64 = q.astype(np.float64)

        def score(matrix: np.ndarray) -> np.ndarray:
            matrix = matrix.astype(np.float64)
            if self.metric == "l2":
                return (-np.sqrt(((matrix - q64) ** 2).sum(axis=1))).astype(np.float32)
            return (matrix * q64).sum(axis=1).astype(np.float32)

        return self._chunked(np.asarray(rows, dtype=np.int64), score)

    def search(self, query: np.ndarray, k: int, flt: Filters | None = None, now_ms: int = 0,
               among: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
        """Ids and scores of the k best matching rows, best first (ties: newer timestamp, later stored);
        with `among` (row positions), of those rows only."""
        n = self.n
        if n == 0 or k <= 0:
            return [], np.empty(0, dtype=np.float32)
        q = self.prepare_query(query)
        mask = self.mask(flt or Filters(), now_ms)
        if among is not None:
            only = np.zeros(n, dtype=bool)
            only[among] = True
            mask = only if mask is None else mask & only
        matches = n if mask is None else int(np.count_nonzero(mask))
        if matches == 0:
            return [], np.empty(0, dtype=np.float32)
        if self.rows is not None or (n >= self.quantize_from and matches >= INT8_FRACTION * n):
            rows, scores = self._rerank(q, k, *self._int8_candidates(q, k, mask, matches))
        else:
            rows = self._float32_candidates(q, k, mask)
            scores = self.exact_scores(q, rows)
        best = top_k(scores, self.timestamp[rows], self.seq[rows], k)
        return self.idmap.ids_at(rows[best]), scores[best]

    def _rerank(self, q: np.ndarray, k: int, rows: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the int8 candidates that can still be in the top k, reading as few float32
        rows as it can: the RERANK_FIRST + k with the best upper bounds first. Their k-th best exact
        score tau is reached by at least k rows, so a candidate whose upper bound (which holds its
        reported score) is below tau can neither be in the top k nor tie with it."""
        if rows.size > k + RERANK_FIRST:
            order = np.argsort(-upper, kind="stable")
            first, rest = order[: k + RERANK_FIRST], order[k + RERANK_FIRST :]
            first_scores = self.exact_scores(q, rows[first])
            tau = float(np.partition(first_scores, first_scores.size - k)[first_scores.size - k])
            rest = rows[rest[upper[rest] >= tau]]
            if rest.size > max(4 * k, NARROW_FROM):  # a band of near-ties: a float32 pass narrows it
                rest = self._narrow(q, k, rest, self.scores(q, rest))
            rows = np.concatenate([rows[first], rest])
            return rows, np.concatenate([first_scores, self.exact_scores(q, rest)])
        return rows, self.exact_scores(q, rows)

    def _float32_candidates(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> np.ndarray:
        """Matching rows whose fast float32 score is close enough to the k-th best to be in the
        exact top k: usually k rows and a few."""
        rows = np.arange(self.n) if mask is None else np.flatnonzero(mask)
        if rows.size <= k:
            return rows
        # Few matches: gather and score only them; many: one full scan is cheaper than a gather.
        if mask is None:
            approx = self.scores(q, None)
        elif rows.size < GATHER_FRACTION * self.n:
            approx = self.scores(q, rows)
        else:
            approx = self.scores(q, None)[rows]
        return self._narrow(q, k, rows, approx)

    def _narrow(self, q: np.ndarray, k: int, rows: np.ndarray, approx: np.ndarray) -> np.ndarray:
        """The rows whose fast float32 score is close enough to the k-th best to be in the exact top k."""
        if rows.size <= k:
            return rows
        kth = float(np.partition(approx, approx.size - k)[approx.size - k])
        # float32 sums of d terms are within ~d * 2^-24 * |q| |x| of exact: keep twice that below the k-th.
        row_norm = float(np.sqrt(self.row_sq_max))
        q_norm = float(np.linalg.norm(q))
        if self.metric == "l2":
            slack = float(np.sqrt(self.dim * 2.0**-23)) * (q_norm + row_norm) + 1e-6
        else:
            slack = self.dim * 2.0**-23 * q_norm * row_norm + 1e-6
        return rows[approx >= kth - 2 * slack]

    def ensure_quantized(self) -> None:
        """Build the int8 copy now (a search of a large tenant builds it on first use) and move the
        float32 rows out of memory into a RowStore. On an empty index: every later add streams."""
        if self.quant is None:
            quant = QuantizedColumns(self.dim, self.capacity, self.metric)
            store = RowStore(self.dim, self.capacity, self.spill_dir)
            for a in range(0, self.n, READ_CHUNK):
                part = self.emb[a : min(self.n, a + READ_CHUNK)]
                quant.set_rows(a, part)
                store.append(a, part)
            self.quant, self.rows, self.emb, self.sqnorm = quant, store, None, None

    def _int8_candidates(self, q: np.ndarray, k: int, mask: np.ndarray | None,
                         matches: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows whose int8 score interval can reach the k-th best lower bound, with their upper
        bounds (quantized.py). Few matches: scan only their codes; many: scan all and mask."""
        self.ensure_quantized()
        if mask is not None and matches < GATHER_FRACTION * self.n:
            return self.quant.candidates(q, k, self.n, rows=np.flatnonzero(mask))
        return self.quant.candidates(q, k, self.n, mask=mask)

    # ----- bulk form, for checkpoints -----
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """Everything needed to rebuild this index: the row columns (views of the first n rows: copy
        them or hold the caller's lock while using them; `emb` of an index with a RowStore is a fresh
        array read from it), the int8 copy when built (`quant_*`), and a JSON-able dict of ids and
        vocabularies."""
        n = self.n
        arrays = {name: getattr(self, name)[:n] for name in ARRAY_COLUMNS
                  if name not in ("emb", "tagbits", "sqnorm", "expires")}
        arrays["expires"] = (np.full(n, NO_EXPIRY, dtype=np.int64) if self.expires is None
                             else self.expires[:n])
        for name in _CODE_COLUMNS:  # int32 in a checkpoint whatever the width in memory
            arrays[name] = arrays[name].astype(np.int32)
        # Stored row-major (one row's words together) and always _WORDS wide.
        arrays["tagbits"] = np.zeros((n, _WORDS), dtype=np.uint64)
        arrays["tagbits"][:, : self.tagwords.shape[0]] = self.tagwords[:, :n].T
        arrays["emb"] = self.emb[:n] if self.rows is None else self.rows.read_range(0, n)
        # A quantized index keeps no squared norms: computed as _set_vectors did, from the same rows.
        arrays["sqnorm"] = (self.sqnorm[:n] if self.rows is None
                            else np.einsum("ij,ij->i", arrays["emb"], arrays["emb"]))
        if self.quant is not None:
            arrays.update({f"quant_{name}": getattr(self.quant, name)[:n] for name in quant_columns(self.metric)})
        meta = {
            "dim": self.dim, "metric": self.metric, "n": n, "ids": self.idmap.all(),
            "tasks": list(self._tasks.strings), "sources": list(self._sources.strings),
            "users": list(self._users.strings), "tags": list(self._tags.strings),
            # rare tag codes per row position: the posting sets are rebuilt from them
            "rare": [[self.idmap.get(eid), list(codes)] for eid, codes in self._row_rare.items()],
        }
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict, spill_dir: str | None = None) -> TenantIndex:
        """The inverse of to_arrays. The arrays are adopted, not copied: pass writable ones (a
        copy-on-write memory map is fine); they are replaced by copies when the index grows. With
        the int8 copy, `emb` may be a RowStore of the n rows (a checkpoint's file, read in place)."""
        n = int(meta["n"])
        index = cls(int(meta["dim"]), meta["metric"], capacity=0, spill_dir=spill_dir)
        emb = arrays["emb"]
        quantized = all(f"quant_{name}" in arrays for name in quant_columns(index.metric))
        if isinstance(emb, RowStore) and (not quantized or emb.dim != index.dim or emb.capacity != n):
            raise ValueError("a row file is only usable with the int8 copy and for the n rows")
        for name, shape in _column_shapes(index.dim, n).items():
            if name == "emb" and isinstance(emb, RowStore):
                continue
            column = arrays[name]
            if column.shape != shape or column.dtype != ARRAY_COLUMNS[name]:
                raise ValueError(f"column {name}: expected {shape} {ARRAY_COLUMNS[name]}, "
                                 f"got {column.shape} {column.dtype}")
            if name != "tagbits":
                setattr(index, name, column)
        ids = meta["ids"]
        if len(ids) != n:
            raise ValueError("ids do not match the row count")
        index.idmap = IdMap.from_ids(ids)  # ValueError when one repeats
        index.capacity = n
        index.row_sq_max = float(index.sqnorm.max()) if n else 0.0
        for vocab, key in ((index._tasks, "tasks"), (index._sources, "sources"), (index._users, "users"),
                           (index._tags, "tags")):
            vocab.strings = [str(s) for s in meta[key]]
            vocab.codes = {s: code for code, s in enumerate(vocab.strings)}
            if len(vocab.codes) != len(vocab.strings):
                raise ValueError(f"vocabulary {key} repeats a value")
        words, dtype = _tag_layout(len(index._tags.strings))  # the words beyond are zero
        index.tagwords = np.ascontiguousarray(arrays["tagbits"][:, :words].T, dtype=dtype)
        index._fit_codes()  # int32 in the checkpoint: int16 where the vocabulary fits
        for row, codes in meta["rare"]:
            eid = ids[row]
            index._row_rare[eid] = tuple(int(c) for c in codes)
            for code in index._row_rare[eid]:
                index._rare.setdefault(code, set()).add(eid)
        index._expiring = int(np.count_nonzero(index.expires[:n] != NO_EXPIRY))
        if not index._expiring:
            index.expires = None  # no row expires: no column kept
        if quantized:
            index.quant = QuantizedColumns(index.dim, 0, index.metric)
            for name, dtype in quant_columns(index.metric).items():
                column = arrays[f"quant_{name}"]
                shape = (n, index.dim) if name == "codes" else (n,)
                if column.shape != shape or column.dtype != dtype:
                    raise ValueError(f"column quant_{name}: expected {shape} {dtype}, got {column.shape} {column.dtype}")
                setattr(index.quant, name, column)
            index.quant.derive(n)
            index.sqnorm = None
            if isinstance(emb, RowStore):
                index.rows, index.emb = emb, None
            else:
                index.rows = RowStore(index.dim, n, spill_dir)
                for a in range(0, n, READ_CHUNK):
                    index.rows.append(a, emb[a : min(n, a + READ_CHUNK)])
                index.emb = None
        return index


def _tag_layout(tags: int) -> tuple[int, type]:
    """Bitset words a row, and their type, for a vocabulary of this many tags: one 32-bit word up
    to 32 tags, then 64-bit words, as many as the bitset's first BITSET_TAGS tags need."""
    return max(1, (min(tags, BITSET_TAGS) + 63) // 64), (np.uint32 if tags <= 32 else np.uint64)


def _code_dtype(vocabulary: int) -> type:
    """The width of a vocabulary code column: int16 while every code (and -1 for none) fits."""
    return np.int16 if vocabulary <= np.iinfo(np.int16).max else np.int32


def _distinct(rows: np.ndarray) -> np.ndarray:
    """The distinct values of an int array (np.unique would import numpy.ma: 0.5 MB per worker)."""
    rows = np.sort(rows)
    return rows[np.concatenate(([True], rows[1:] != rows[:-1]))] if rows.size else rows


def top_k(scores: np.ndarray, timestamps: np.ndarray, seqs: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best: higher score, then newer timestamp, then later stored.

    A partition finds the k-th best score; every row tied with it stays in the running, so the
    tie-break decides among all of them rather than among whichever the partition kept."""
    size = scores.size
    if k < size:
        kth = np.partition(scores, size - k)[size - k]
        candidates = np.flatnonzero(scores >= kth)
    else:
        candidates = np.arange(size)
    order = np.lexsort((-seqs[candidates], -timestamps[candidates], -scores[candidates]))
    return candidates[order[:k]]
