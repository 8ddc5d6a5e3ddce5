"""Brute-force numpy oracles and random rows for the index tests (no database)."""

from __future__ import annotations

import numpy as np

from memindex.columns import NO_EXPIRY, Filters
from memindex.index import TenantIndex
from memindex.search import exact_scores, top_k

TAGS = ["a", "b", "c", "d"]


def make_rows(rng, n, dim, start=0):
    return {
        "ids": [f"id{start + i}" for i in range(n)],
        "embeddings": rng.normal(size=(n, dim)).astype(np.float32),
        "seq": np.arange(start, start + n, dtype=np.int64),
        "timestamp": rng.integers(0, 50, size=n).astype(np.int64),  # many equal timestamps: ties
        "reward": rng.integers(-2, 3, size=n).astype(np.float64),
        "expires_at": np.full(n, NO_EXPIRY, dtype=np.int64),
        "task_id": [f"task_{rng.integers(20)}" for _ in range(n)],
        "source": [None if rng.random() < 0.3 else f"s{rng.integers(3)}" for _ in range(n)],
        "user_id": [None if rng.random() < 0.3 else f"u{rng.integers(3)}" for _ in range(n)],
        "tags": [list(rng.choice(TAGS, size=rng.integers(0, 3), replace=False)) for _ in range(n)],
    }


def oracle(rows, metric, query, k, flt: Filters, now=0):
    emb = rows["embeddings"].astype(np.float64)
    q = query.astype(np.float64)
    if metric == "cosine":
        scores = (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    elif metric == "dot":
        scores = emb @ q
    else:
        scores = -np.linalg.norm(emb - q, axis=1)
    keep = []
    for i in range(len(rows["ids"])):
        tags = set(rows["tags"][i])
        ok = rows["expires_at"][i] > now
        ok &= flt.min_reward is None or rows["reward"][i] >= flt.min_reward
        ok &= not flt.tags_any or bool(tags & set(flt.tags_any))
        ok &= set(flt.tags_all) <= tags
        ok &= flt.task_id_prefix is None or rows["task_id"][i].startswith(flt.task_id_prefix)
        ok &= flt.source is None or rows["source"][i] == flt.source
        ok &= flt.user_id is None or rows["user_id"][i] == flt.user_id
        ok &= flt.time_after is None or rows["timestamp"][i] >= flt.time_after
        ok &= flt.time_before is None or rows["timestamp"][i] <= flt.time_before
        if ok:
            keep.append(i)
    keep.sort(key=lambda i: (-round(scores[i], 5), -rows["timestamp"][i], -rows["seq"][i]))
    return [rows["ids"][i] for i in keep[:k]], {rows["ids"][i]: scores[i] for i in keep}


def random_filters(rng) -> Filters:
    def maybe(value):
        return value if rng.random() < 0.4 else None

    return Filters(
        min_reward=maybe(float(rng.integers(-2, 3))),
        tags_any=tuple(rng.choice(TAGS + ["zz"], size=rng.integers(0, 3), replace=False)),
        tags_all=tuple(rng.choice(TAGS, size=rng.integers(0, 2), replace=False)),
        task_id_prefix=maybe(f"task_{rng.integers(1, 3)}"),
        source=maybe(f"s{rng.integers(4)}"),
        user_id=maybe(f"u{rng.integers(4)}"),
        time_after=maybe(int(rng.integers(0, 30))),
        time_before=maybe(int(rng.integers(20, 50))),
    )


def brute_force(index: TenantIndex, query, k, flt=None, now=0):
    """The float32 oracle: every matching row scored in float32, the tie-break of docs/api.md §4."""
    q = index.prepare_query(query)
    mask = index.mask(flt or Filters(), now)
    rows = np.arange(index.n) if mask is None else np.flatnonzero(mask)
    scores = exact_scores(index.storage, q, rows)  # every matching row, no candidate selection
    best = top_k(scores, index.columns.timestamp[rows], index.columns.seq[rows], k)
    return index.ids_at(rows[best]), scores[best]


def adversarial_rows(rng, kind: str, n: int, dim: int):
    if kind == "clustered":
        centres = rng.normal(size=(8, dim)) * 3
        return (centres[rng.integers(8, size=n)] + rng.normal(size=(n, dim)) * 0.3).astype(np.float32)
    if kind == "duplicates":
        base = rng.normal(size=(n // 20 + 1, dim)).astype(np.float32)
        return base[rng.integers(len(base), size=n)]
    if kind == "near-ties":
        base = rng.normal(size=dim).astype(np.float32)
        return (base + rng.normal(size=(n, dim)) * 1e-4).astype(np.float32)
    if kind == "all-equal":
        return np.tile(rng.normal(size=dim).astype(np.float32), (n, 1))
    if kind == "outliers":
        rows = rng.normal(size=(n, dim)).astype(np.float32)
        rows[rng.integers(n, size=10)] *= 1000
        return rows
    raise ValueError(kind)


def assert_same_answers(a: TenantIndex, b: TenantIndex, rng, rounds: int = 60) -> None:
    for _ in range(rounds):
        q = rng.normal(size=a.dim).astype(np.float32)
        flt = random_filters(rng)
        k = int(rng.integers(1, 40))
        ids_a, scores_a = a.search(q, k, flt)
        ids_b, scores_b = b.search(q, k, flt)
        assert ids_a == ids_b
        np.testing.assert_array_equal(scores_a, scores_b)
