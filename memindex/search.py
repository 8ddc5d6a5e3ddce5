"""Search strategy: exact filtered top-k over an index's rows, in two steps.

A fast scan picks candidates (float32 BLAS over in-memory rows, or the int8 copy of spilled rows:
quantized.py), then the candidates get their exact scores (float64 sums of the float32 rows,
rounded to float32) and the tie-break of docs/api.md §4. Every candidate set is a proven superset
of the exact top k. A filter matching few rows gathers and scores only them; a broad one scans
every row and masks.
"""

from __future__ import annotations

import numpy as np

from .storage import RowStorage

GATHER_FRACTION = 0.25  # below this share of matching rows, score only the matching rows
INT8_FRACTION = 0.05  # before the int8 copy exists, filters matching fewer rows than this gather float32 rows
NARROW_FROM = 256  # more int8 candidates than this (and than 4 k) get a float32 pass before float64
RERANK_FIRST = 8  # int8 candidates scored exactly first, beyond k, to prune the rest (rerank)


def wants_int8(n: int, matches: int, quantize_from: int) -> bool:
    """Whether an index still in memory should build its int8 copy for this search: it is large
    enough, and the filter is broad enough that gathering its float32 rows would not be cheaper."""
    return n >= quantize_from and matches >= INT8_FRACTION * n


def prepare_query(query: np.ndarray, dim: int, metric: str) -> np.ndarray:
    q = np.asarray(query, dtype=np.float32).reshape(dim)
    if metric == "cosine":
        norm = float(np.linalg.norm(q))
        q = q / norm if norm > 0 else q
    return np.ascontiguousarray(q, dtype=np.float32)


def best_rows(storage: RowStorage, q: np.ndarray, k: int, mask: np.ndarray | None, matches: int,
              n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows among [0, n) (those of `mask`, `matches` of them) that can be in the exact top k, with
    their exact scores: from the int8 copy when the storage has one, else from a float32 scan."""
    if storage.quant is not None:
        rows, upper = int8_candidates(storage, q, k, mask, matches, n)
        return rerank(storage, q, k, rows, upper, n)
    rows = float32_candidates(storage, q, k, mask, n)
    return rows, exact_scores(storage, q, rows)


def exact_scores(storage: RowStorage, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The reported scores: each row on its own in float64, rounded to float32, so equal rows
    score equal wherever they sit and ties fall to the tie-break, not to rounding."""
    q64 = q.astype(np.float64)
    l2 = storage.metric == "l2"

    def score(matrix: np.ndarray) -> np.ndarray:
        matrix = matrix.astype(np.float64)
        if l2:
            return (-np.sqrt(((matrix - q64) ** 2).sum(axis=1))).astype(np.float32)
        return (matrix * q64).sum(axis=1).astype(np.float32)

    return storage.chunked(np.asarray(rows, dtype=np.int64), score)


def fast_scores(storage: RowStorage, q: np.ndarray, rows: np.ndarray | None, n: int) -> np.ndarray:
    """Fast float32 (BLAS) scores of `rows` (rows [0, n) when None), higher is better. Their last
    bits depend on how BLAS blocks the matrix, so they only choose candidates (see exact_scores)."""
    dots = storage.dots(q, rows, n)
    if storage.metric != "l2":
        return dots
    sq = storage.squared_norms(rows, n)  # float32 of the exact sums
    dist2 = np.maximum(sq - 2.0 * dots + np.float32(np.dot(q, q)), 0.0)
    return -np.sqrt(dist2, dtype=np.float32)


def rerank(storage: RowStorage, q: np.ndarray, k: int, rows: np.ndarray, upper: np.ndarray,
           n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of the int8 candidates that can still be in the top k, reading as few float32
    rows as it can: the RERANK_FIRST + k with the best upper bounds first. Their k-th best exact
    score tau is reached by at least k rows, so a candidate whose upper bound (which holds its
    reported score) is below tau can neither be in the top k nor tie with it."""
    if rows.size > k + RERANK_FIRST:
        order = np.argsort(-upper, kind="stable")
        first, rest = order[: k + RERANK_FIRST], order[k + RERANK_FIRST :]
        first_scores = exact_scores(storage, q, rows[first])
        tau = float(np.partition(first_scores, first_scores.size - k)[first_scores.size - k])
        rest = rows[rest[upper[rest] >= tau]]
        if rest.size > max(4 * k, NARROW_FROM):  # a band of near-ties: a float32 pass narrows it
            rest = narrow(storage, q, k, rest, fast_scores(storage, q, rest, n))
        rows = np.concatenate([rows[first], rest])
        return rows, np.concatenate([first_scores, exact_scores(storage, q, rest)])
    return rows, exact_scores(storage, q, rows)


def float32_candidates(storage: RowStorage, q: np.ndarray, k: int, mask: np.ndarray | None,
                       n: int) -> np.ndarray:
    """Matching rows whose fast float32 score is close enough to the k-th best to be in the
    exact top k: usually k rows and a few."""
    rows = np.arange(n) if mask is None else np.flatnonzero(mask)
    if rows.size <= k:
        return rows
    # Few matches: gather and score only them; many: one full scan is cheaper than a gather.
    if mask is None:
        approx = fast_scores(storage, q, None, n)
    elif rows.size < GATHER_FRACTION * n:
        approx = fast_scores(storage, q, rows, n)
    else:
        approx = fast_scores(storage, q, None, n)[rows]
    return narrow(storage, q, k, rows, approx)


def narrow(storage: RowStorage, q: np.ndarray, k: int, rows: np.ndarray, approx: np.ndarray) -> np.ndarray:
    """The rows whose fast float32 score is close enough to the k-th best to be in the exact top k."""
    if rows.size <= k:
        return rows
    kth = float(np.partition(approx, approx.size - k)[approx.size - k])
    return rows[approx >= kth - 2 * slack(storage, q)]


def slack(storage: RowStorage, q: np.ndarray) -> float:
    """How far a fast float32 score can be from the exact one: float32 sums of d terms are within
    ~d * 2^-24 * |q| |x| of exact (twice this is the margin used)."""
    row_norm = float(np.sqrt(storage.row_sq_max))
    q_norm = float(np.linalg.norm(q))
    if storage.metric == "l2":
        return float(np.sqrt(storage.dim * 2.0**-23)) * (q_norm + row_norm) + 1e-6
    return storage.dim * 2.0**-23 * q_norm * row_norm + 1e-6


class VectorRanker:
    """Exact 1-based ranks, in the vector ranking of `rows` (by exact score, then newer timestamp,
    then later stored), of any of those rows, and cheaper floors of those ranks.

    Every row gets an interval holding its exact score: from the int8 copy when the storage has
    one (one int8 scan, no float32 row read: quantized.py), else its fast float32 score plus or
    minus twice the float32 error bound. A row whose interval lies above a target's exact score
    beats it for certain, one below cannot, and only the rows whose interval holds it get exact
    scores."""

    def __init__(self, storage: RowStorage, q: np.ndarray, rows: np.ndarray, n: int, timestamps: np.ndarray,
                 seqs: np.ndarray) -> None:
        self.storage, self.q, self.rows = storage, q, rows
        self.timestamps, self.seqs = timestamps, seqs
        self.n = n
        if storage.quant is not None:
            lower, upper = storage.quant.bounds(q, n)
            self._intervals(lower[rows], upper[rows], narrow=False)
        else:
            self._narrow()
        self.row_at = {row: i for i, row in enumerate(rows.tolist())} if rows.size < n else None

    def _intervals(self, lower: np.ndarray, upper: np.ndarray, *, narrow: bool) -> None:
        self.lower, self.upper, self.narrow = lower, upper, narrow
        self.by_lower = np.sort(lower)

    def _narrow(self) -> None:
        """float32 intervals: one fast scan of the rows (from the row file when spilled)."""
        rows, n = self.rows, self.n
        whole = rows.size * 4 >= n  # many rows: one full scan is cheaper than a gather
        approx = fast_scores(self.storage, self.q, None, n)[rows] if whole else fast_scores(self.storage, self.q, rows, n)
        band = 2 * slack(self.storage, self.q)
        self._intervals(approx.astype(np.float64) - band, approx.astype(np.float64) + band, narrow=True)

    def _at(self, targets: np.ndarray) -> np.ndarray:
        return targets if self.row_at is None else np.fromiter((self.row_at[t] for t in targets.tolist()),
                                                               dtype=np.int64, count=targets.size)

    def floors(self, targets: np.ndarray) -> np.ndarray:
        """A lower bound of each target's rank: 1 + the rows certainly scoring above it."""
        upper = self.upper[self._at(targets)]
        return 1 + self.rows.size - np.searchsorted(self.by_lower, upper, side="right")

    def ranks(self, targets: np.ndarray) -> np.ndarray:
        exact = exact_scores(self.storage, self.q, targets)
        wide = exact.astype(np.float64)
        holds = [np.flatnonzero((self.lower <= e) & (self.upper >= e)) for e in wide.tolist()]
        if not self.narrow and sum(h.size for h in holds) > max(NARROW_FROM, self.rows.size // 16):
            # The int8 intervals hold too many rows to read one by one: a sequential float32 pass
            # over every row costs less and leaves a band of a few rows.
            self._narrow()
            holds = [np.flatnonzero((self.lower <= e) & (self.upper >= e)) for e in wide.tolist()]
        above = self.rows.size - np.searchsorted(self.by_lower, wide, side="right")
        # Every target's band scored at once, in row order (one pass over the row file when spilled).
        banded = np.unique(np.concatenate(holds)) if holds else np.empty(0, dtype=np.int64)
        exact_at = exact_scores(self.storage, self.q, self.rows[banded])
        ranks = np.empty(targets.size, dtype=np.int64)
        for i, (row, score) in enumerate(zip(targets.tolist(), exact.tolist(), strict=True)):
            at = np.searchsorted(banded, holds[i])
            near, near_exact = self.rows[banded[at]], exact_at[at]
            ts, seq = self.timestamps[row], self.seqs[row]
            near_ts, near_seq = self.timestamps[near], self.seqs[near]
            beats = (near_exact > score) | ((near_exact == score) & (
                (near_ts > ts) | ((near_ts == ts) & (near_seq > seq))))
            ranks[i] = 1 + int(above[i]) + int(np.count_nonzero(beats))
        return ranks


def int8_candidates(storage: RowStorage, q: np.ndarray, k: int, mask: np.ndarray | None, matches: int,
                    n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose int8 score interval can reach the k-th best lower bound, with their upper
    bounds (quantized.py). Few matches: scan only their codes; many: scan all and mask."""
    if mask is not None and matches < GATHER_FRACTION * n:
        return storage.quant.candidates(q, k, n, rows=np.flatnonzero(mask))
    return storage.quant.candidates(q, k, n, mask=mask)


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
