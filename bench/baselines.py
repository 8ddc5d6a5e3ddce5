"""In-process baselines: a bare numpy exact search and the service's own TenantIndex, no HTTP."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from bench.data import FILTERS, Dataset
from bench.stats import query_cell, summarize, time_calls

GATHER_BELOW = 0.02  # score only the matching rows when fewer than this fraction match


def numpy_top_k(m: np.ndarray, q: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Exact top-k row numbers by dot product (rows: the matching row numbers, None for all)."""
    if rows is None:
        scores = m @ q
        cand = np.arange(scores.size)
    else:
        scores = m[rows] @ q
        cand = rows
    size = scores.size
    part = np.argpartition(scores, size - k)[size - k:] if k < size else np.arange(size)
    order = part[np.argsort(-scores[part], kind="stable")]
    return cand[order]


def numpy_plan(ds: Dataset, flt: str) -> np.ndarray | None:
    """Matching rows for a filter, or None when every row matches."""
    mask = ds.masks[flt]
    return None if mask.all() else np.flatnonzero(mask)


def exact_ids(ds: Dataset, queries: np.ndarray, k: int, flt: str) -> list[list[str]]:
    """Ground truth: ids of the exact top-k per query."""
    rows = numpy_plan(ds, flt)
    return [[ds.ids[r] for r in numpy_top_k(ds.embeddings, q, k, rows)] for q in queries]


def bench_numpy(ds: Dataset, queries: np.ndarray, *, top_ks: tuple[int, ...], count: int, threads: int | None) -> list[dict]:
    """p50/p99 of numpy exact search: M @ q over all rows, or over the gathered matching rows."""
    out = []
    with threadpool_limits(limits=threads):  # BLAS and OpenMP (faiss), as gunicorn.conf.py sets both
        for flt in FILTERS:
            mask = ds.masks[flt]
            for k in top_ks:
                if mask.all():
                    def call(i: int, k: int = k) -> object:
                        return numpy_top_k(ds.embeddings, queries[i % len(queries)], k)
                elif mask.mean() < GATHER_BELOW:
                    def call(i: int, k: int = k, mask: np.ndarray = mask) -> object:
                        return numpy_top_k(ds.embeddings, queries[i % len(queries)], k, np.flatnonzero(mask))
                else:
                    def call(i: int, k: int = k, mask: np.ndarray = mask) -> object:
                        s = ds.embeddings @ queries[i % len(queries)]
                        s[~mask] = -np.inf
                        return np.argpartition(s, s.size - k)[s.size - k:]
                out.append({
                    "system": "numpy", "op": "query", "n": ds.n, "top_k": k, "filter": flt,
                    "concurrency": 1, "blas_threads": threads or "default",
                    **summarize(time_calls(call, count)),
                })
    return out


def build_index(ds: Dataset, *, metric: str = "cosine", batch: int = 10_000, texts: list[str] | None = None):
    """A TenantIndex holding ds (with `texts` for keyword search), added in batches as a worker
    would catch up."""
    from memindex.columns import NO_EXPIRY
    from memindex.index import TenantIndex

    index = TenantIndex(ds.dim, metric)
    for start in range(0, ds.n, batch):
        stop = min(ds.n, start + batch)
        m = stop - start
        index.add(
            ids=ds.ids[start:stop],
            embeddings=ds.embeddings[start:stop],
            seq=np.arange(start + 1, stop + 1, dtype=np.int64),
            timestamp=ds.timestamp[start:stop],
            reward=ds.reward[start:stop],
            expires_at=np.full(m, NO_EXPIRY, dtype=np.int64),
            task_id=ds.task_id[start:stop],
            source=ds.source[start:stop],
            user_id=ds.user_id[start:stop],
            tags=ds.tags[start:stop],
            text=None if texts is None else texts[start:stop],
        )
    index.keyword.merge()  # as a worker's build does (episodes/cache.py)
    return index


def index_filters(flt: str):
    from memindex.columns import Filters

    return Filters(**{name: tuple(v) if isinstance(v, list) else v for name, v in FILTERS[flt].items()})


def bench_index(ds: Dataset, queries: np.ndarray, *, top_ks: tuple[int, ...], count: int, threads: int | None,
                truth: dict[tuple[int, str], list[list[str]]]) -> list[dict]:
    """Build time, p50/p99 and recall of the in-process TenantIndex against numpy's exact answer."""
    t = time.perf_counter()
    index = build_index(ds)
    build_s = time.perf_counter() - t
    now_ms = int(time.time() * 1000)
    out: list[dict] = [{"system": "index", "op": "build", "n": ds.n, "seconds": round(build_s, 3),
                        "episodes_per_s": round(ds.n / build_s, 1)}]
    with threadpool_limits(limits=threads):  # BLAS and OpenMP (faiss), as gunicorn.conf.py sets both
        for flt in FILTERS:
            f = index_filters(flt)
            for k in top_ks:
                def call(i: int, k: int = k, f=f) -> Sequence[str]:
                    return index.search(queries[i % len(queries)], k, f, now_ms)[0]

                out.append({"system": "index", "op": "query", "n": ds.n, "top_k": k, "filter": flt,
                            "blas_threads": threads or "default", **query_cell(call, truth[(k, flt)], count)})
    return out
