"""Keyword (BM25) and hybrid (RRF) queries of the in-process TenantIndex over synthetic texts.

Texts: 8 to 40 words drawn from a Zipf-weighted vocabulary of 30,000 words (a few very common, a
long tail of rare ones), plus one of 10,000 error codes (`ERR_<n>`), so a query mixes common,
rare and code tokens as real ones do. Fixed seeds: every run sees the same texts and queries.
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from bench.baselines import build_index, index_filters
from bench.data import FILTERS, Dataset
from bench.stats import summarize, time_calls

VOCABULARY = 30_000
CODES = 10_000


def _words(rng: np.random.Generator, size: int) -> np.ndarray:
    ranks = np.arange(1, VOCABULARY + 1, dtype=np.float64)
    p = ranks ** -1.1
    return rng.choice(VOCABULARY, size=size, p=p / p.sum())


def make_texts(n: int, seed: int = 5) -> list[str]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 41, size=n)
    words = _words(rng, int(lengths.sum()))
    codes = rng.integers(0, CODES, size=n)
    out, at = [], 0
    for length, code in zip(lengths.tolist(), codes.tolist(), strict=True):
        out.append(" ".join(f"w{w}" for w in words[at : at + length].tolist()) + f" failed with ERR_{code}.")
        at += length
    return out


def make_text_queries(count: int, seed: int = 6) -> list[str]:
    rng = np.random.default_rng(seed)
    words = _words(rng, 3 * count).reshape(count, 3)
    return [f"w{a} w{b} w{c} ERR_{rng.integers(CODES)}" for a, b, c in words.tolist()]


def bench_text(ds: Dataset, queries: np.ndarray, *, top_ks: tuple[int, ...], count: int) -> list[dict]:
    """Build time with texts, then keyword and hybrid p50/p99 per filter and top_k (1 BLAS thread,
    as in a worker)."""
    from memindex.ranking import hybrid_search, keyword_search

    texts = make_texts(ds.n)
    text_queries = make_text_queries(len(queries))
    t = time.perf_counter()
    index = build_index(ds, texts=texts)
    build_s = time.perf_counter() - t
    now_ms = int(time.time() * 1000)
    out: list[dict] = [{"system": "index", "op": "build_text", "n": ds.n, "seconds": round(build_s, 3),
                        "episodes_per_s": round(ds.n / build_s, 1), "keyword_mib": round(index.keyword.nbytes() / 2**20, 1)}]
    with threadpool_limits(limits=1):
        for flt in FILTERS:
            f = index_filters(flt)
            for k in top_ks:
                def keyword(i: int, k: int = k, f=f) -> object:
                    return keyword_search(index, text_queries[i % len(text_queries)], k, f, now_ms)

                def hybrid(i: int, k: int = k, f=f) -> object:
                    return hybrid_search(index, queries[i % len(queries)], text_queries[i % len(text_queries)], k,
                                         f, now_ms)

                for op, call in (("keyword", keyword), ("hybrid", hybrid)):
                    out.append({"system": "index", "op": op, "n": ds.n, "top_k": k, "filter": flt, "concurrency": 1,
                                "blas_threads": 1, **summarize(time_calls(call, count))})
    return out
