"""Keyword and hybrid rankings over an index (docs/api.md §4 and §9).

Keyword: the exact BM25 scores of keyword.py, among the rows the filters leave that hold at least
one query term. Hybrid: reciprocal rank fusion of the exact vector ranking of every filtered row
and that keyword ranking,

    score = vector_weight / (rrf_k + vector_rank) + keyword_weight / (rrf_k + keyword_rank)

(the keyword part is 0 for a row holding no query term). Both orders break ties as every ranking
does: higher score, then newer timestamp, then later stored.

The hybrid top k is exact without ranking every row by vector: the vector top m (m = min(max(k,
VECTOR_DEPTH), matches) rows) get exact scores; a row outside it and holding no query term scores
at most vector_weight / (rrf_k + m + 1), below each of those m (vector_weight > 0), and m >= k of
them exist unless every row is among them. A keyword row outside the vector top m scores at most
that bound plus its keyword part; those rows, best keyword rank first, get their exact vector rank
(search.VectorRanker) until the next one's bound is below the k-th best exact score found, so no
row left out can reach or tie it; on the way, a row whose score with a cheap floor of its vector
rank (the rows certainly above it) cannot reach that k-th best is left out without its exact rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import search as strategy
from .columns import Filters
from .index import TenantIndex

VECTOR_DEPTH = 100  # the vector ranking computed first: rows beyond it score at most 1/(rrf_k + 101) by vector


@dataclass(frozen=True)
class Hits:
    """Rows best first, their scores (float64) and, for hybrid, each part's rank (0: absent)."""

    rows: np.ndarray
    scores: np.ndarray
    vector_rank: np.ndarray | None = None
    keyword_rank: np.ndarray | None = None


def best_first(scores: np.ndarray, rows: np.ndarray, index: TenantIndex) -> np.ndarray:
    """Positions of rows ordered by higher score, then newer timestamp, then later stored."""
    columns = index.columns
    return np.lexsort((-columns.seq[rows], -columns.timestamp[rows], -scores))


def _filtered(index: TenantIndex, flt: Filters, now_ms: int) -> tuple[np.ndarray | None, int]:
    mask = index.mask(flt, now_ms)
    return mask, index.n if mask is None else int(np.count_nonzero(mask))


def keyword_ranking(index: TenantIndex, text: str, mask: np.ndarray | None, now_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Every row of `mask` (all rows when None) holding a query term, best first, and its BM25 score."""
    rows, scores = index.keyword.bm25(text, index.n, index.live(now_ms))
    if mask is not None:
        keep = mask[rows]
        rows, scores = rows[keep], scores[keep]
    order = best_first(scores, rows, index)
    return rows[order], scores[order]


def keyword_search(index: TenantIndex, text: str, k: int, flt: Filters | None = None, now_ms: int = 0) -> Hits:
    """The k best rows by BM25 among those the filters leave that hold a query term."""
    if index.n == 0 or k <= 0:
        return Hits(np.empty(0, dtype=np.int64), np.empty(0))
    mask, matches = _filtered(index, flt or Filters(), now_ms)
    if matches == 0:
        return Hits(np.empty(0, dtype=np.int64), np.empty(0))
    rows, scores = index.keyword.bm25(text, index.n, index.live(now_ms))
    if mask is not None:
        keep = mask[rows]
        rows, scores = rows[keep], scores[keep]
    if rows.size > k:  # only rows tied with the k-th best score or above can be among the k
        kth = np.partition(scores, rows.size - k)[rows.size - k]
        keep = scores >= kth
        rows, scores = rows[keep], scores[keep]
    order = best_first(scores, rows, index)[:k]
    return Hits(rows[order], scores[order])


def rrf(vector_rank: np.ndarray, keyword_rank: np.ndarray, rrf_k: float, vector_weight: float,
        keyword_weight: float) -> np.ndarray:
    """The fused score of rows with these ranks (keyword_rank 0: no keyword part), float64."""
    vector_rank = vector_rank.astype(np.float64)
    keyword_part = np.where(keyword_rank > 0, keyword_weight / (rrf_k + keyword_rank.astype(np.float64)), 0.0)
    return vector_weight / (rrf_k + vector_rank) + keyword_part


def hybrid_search(index: TenantIndex, query: np.ndarray, text: str, k: int, flt: Filters | None = None,
                  now_ms: int = 0, rrf_k: float = 60.0, vector_weight: float = 1.0,
                  keyword_weight: float = 1.0) -> Hits:
    """The k best rows by reciprocal rank fusion (module docstring: why it is exact).

    Not split: one bounded loop whose state (the exactly scored rows, the k-th best score, the
    keyword rows still pending) is shared by every step."""
    if vector_weight <= 0 or keyword_weight < 0 or rrf_k <= 0:
        raise ValueError("hybrid needs vector_weight > 0, keyword_weight >= 0 and rrf_k > 0")
    n = index.n
    empty = Hits(np.empty(0, dtype=np.int64), np.empty(0), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
    if n == 0 or k <= 0:
        return empty
    mask, matches = _filtered(index, flt or Filters(), now_ms)
    if matches == 0:
        return empty
    q = index.prepare_query(query)
    krows, _ = keyword_ranking(index, text, mask, now_ms)
    keyword_rank = np.zeros(n, dtype=np.int64)
    keyword_rank[krows] = np.arange(1, krows.size + 1)
    top = min(max(k, VECTOR_DEPTH), matches)
    vrows, _ = index.vector_rows(q, top, mask, matches)
    vector_rank = np.zeros(n, dtype=np.int64)
    vector_rank[vrows] = np.arange(1, vrows.size + 1)
    known = [vrows.astype(np.int64)]
    pending = krows[vector_rank[krows] == 0]  # best keyword rank first: bounds decrease along it
    bound = vector_weight / (rrf_k + top + 1)  # any row outside the vector top `top`
    ranker: strategy.VectorRanker | None = None
    done, batch = 0, k
    while done < pending.size:
        scored = np.concatenate(known)
        scores = rrf(vector_rank[scored], keyword_rank[scored], rrf_k, vector_weight, keyword_weight)
        tau = float(np.partition(scores, scores.size - k)[scores.size - k]) if scores.size >= k else -np.inf
        if bound + keyword_weight / (rrf_k + int(keyword_rank[pending[done]])) < tau:
            break
        if ranker is None:
            rows = np.arange(n) if mask is None else np.flatnonzero(mask)
            ranker = strategy.VectorRanker(index.storage, q, rows, n, index.columns.timestamp, index.columns.seq)
        chunk = pending[done : done + batch]
        done += chunk.size
        batch *= 2
        # A floor of the vector rank bounds the score: rows that cannot reach tau (which only rises)
        # are left out without their exact rank.
        floors = ranker.floors(chunk)
        reach = rrf(floors, keyword_rank[chunk], rrf_k, vector_weight, keyword_weight) >= tau
        chunk = chunk[reach]
        if chunk.size:
            vector_rank[chunk] = ranker.ranks(chunk)
            known.append(chunk.astype(np.int64))
    scored = np.concatenate(known)
    scores = rrf(vector_rank[scored], keyword_rank[scored], rrf_k, vector_weight, keyword_weight)
    order = best_first(scores, scored, index)[:k]
    rows = scored[order]
    return Hits(rows, scores[order], vector_rank[rows], keyword_rank[rows])
