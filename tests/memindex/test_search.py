"""memindex/search.py: the search strategy against brute-force numpy oracles (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from memindex.columns import NO_EXPIRY, Filters
from memindex.index import TenantIndex
from tests.memindex.oracle import adversarial_rows, brute_force, make_rows, oracle, random_filters


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_search_matches_the_oracle_for_random_filters(metric):
    rng = np.random.default_rng(7)
    dim = 16
    rows = make_rows(rng, 400, dim)
    index = TenantIndex(dim, metric)
    index.add(**rows)
    for _ in range(150):
        query = rng.normal(size=dim).astype(np.float32)
        k = int(rng.integers(1, 30))
        flt = random_filters(rng)
        ids, scores = index.search(query, k, flt)
        expected, expected_scores = oracle(rows, metric, query, k, flt)
        assert len(ids) == len(expected) == min(k, len(expected_scores))
        np.testing.assert_allclose(scores, [expected_scores[i] for i in ids], atol=1e-4)
        # Same ranking up to float32 rounding: scores at each position agree.
        np.testing.assert_allclose([expected_scores[i] for i in ids], [expected_scores[i] for i in expected],
                                   atol=1e-4)


def test_exact_ties_break_on_newer_timestamp_then_later_store():
    index = TenantIndex(2, "cosine")
    same = np.array([[1.0, 0.0]] * 4, dtype=np.float32)
    index.add(ids=["old", "new", "first", "second"], embeddings=same, seq=np.array([0, 1, 2, 3]),
              timestamp=np.array([1, 9, 5, 5]), reward=np.zeros(4), expires_at=np.full(4, NO_EXPIRY),
              task_id=["t"] * 4, source=[None] * 4, user_id=[None] * 4, tags=[[]] * 4)
    ids, _ = index.search(np.array([1.0, 0.0], dtype=np.float32), 3)
    assert ids == ["new", "second", "first"]


@pytest.mark.parametrize("path", ["int8", "float32"])
@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
@pytest.mark.parametrize("kind", ["clustered", "duplicates", "near-ties", "all-equal", "outliers"])
@pytest.mark.parametrize("dim", [8, 96, 1024])
def test_certified_search_equals_the_brute_force_oracle(metric, kind, dim, path):
    rng = np.random.default_rng(hash((metric, kind, dim)) % 2**32)
    n = 1500 if dim < 1024 else 600
    rows = make_rows(rng, n, dim)
    rows["embeddings"] = adversarial_rows(rng, kind, n, dim)
    rows["timestamp"] = rng.integers(0, 3, size=n).astype(np.int64)  # many exact ties
    index = TenantIndex(dim, metric, quantize_from=100 if path == "int8" else 10**9)
    index.add(**rows)
    for trial in range(12):
        if trial % 3 == 0:
            query = rows["embeddings"][rng.integers(n)].copy()  # a stored row: exact top score ties
        else:
            query = rng.normal(size=dim).astype(np.float32) * (50 if kind == "outliers" else 1)
        k = int(rng.choice([1, 5, 50]))
        flt = Filters(min_reward=-1.0) if trial % 2 else None  # a broad filter (80 %) also goes through int8
        ids, scores = index.search(query, k, flt)
        expected_ids, expected_scores = brute_force(index, query, k, flt)
        assert ids == expected_ids
        np.testing.assert_array_equal(scores, expected_scores)  # the same float32 values, bit for bit
    assert (index.storage.quant is not None) == (path == "int8")  # the path under test really ran


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_exactly_quantized_rows_and_a_far_query_keep_float32_ties(metric):
    """Rows and queries that int8 codes represent exactly: the bounds shrink to their rounding
    headroom, finer than the float32 rounding of the reported scores. Rows whose distances differ
    by less than a float32 step tie once reported, and the newer must win (an l2 case that once
    lost it: a query far larger than the rows)."""
    rng = np.random.default_rng(0)
    dim, n = 8, 2000
    emb = rng.integers(-126, 127, size=(n, dim)).astype(np.float32)
    emb[:, 0] = 127  # scale exactly 1: codes are the rows
    index = TenantIndex(dim, metric, quantize_from=100)
    index.add(ids=[f"e{i}" for i in range(n)], embeddings=emb, seq=np.arange(n),
              timestamp=rng.integers(0, 3, size=n), reward=np.zeros(n), expires_at=np.full(n, NO_EXPIRY),
              task_id=["t"] * n, source=[None] * n, user_id=[None] * n, tags=[[]] * n)
    for _ in range(300):
        m = float(rng.choice([100.0, 1000.0, 10000.0]))
        query = (rng.integers(-126, 127, size=dim) * m).astype(np.float32)
        query[0] = -127 * m
        k = int(rng.choice([1, 5]))
        assert index.search(query, k)[0] == brute_force(index, query, k)[0]


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
@pytest.mark.parametrize("placement", ["anywhere", "between-samples", "only-between-samples", "best-masked-out"])
def test_the_first_cut_from_a_sample_keeps_what_the_float64_reference_picks(metric, placement):
    """candidates() takes its first cut from the k-th best of a sample of the scores: with the best
    rows inside or outside the sampled slices, with a mask that no sampled row passes (the sample
    then falls back to the whole scope) and with one that only the worse half passes, it picks
    what every row's float64 bounds pick."""
    from memindex import quantized
    from memindex.quantized import select

    rng = np.random.default_rng(len(metric) * 7 + len(placement))
    n, dim = 24_000, 16
    rows = make_rows(rng, n, dim)
    index = TenantIndex(dim, metric, quantize_from=100)
    index.add(**rows)
    index.ensure_quantized()
    quant = index.storage.quant
    step, part = n // quantized.SAMPLE_SLICES, n // (quantized.SAMPLE_SLICES * 16)
    sampled = np.zeros(n, dtype=bool)
    for i in range(quantized.SAMPLE_SLICES):
        sampled[i * step : i * step + part] = True
    for _ in range(6):
        k = int(rng.choice([1, 5, 50]))
        query = rng.normal(size=dim).astype(np.float32)
        q = index.prepare_query(query)
        lower, upper = quant.bounds(q, index.n)
        mask = None
        if placement == "between-samples":  # the best rows all lie where the sample does not look
            mask = np.ones(n, dtype=bool)
            mask[sampled & (upper > np.quantile(upper, 0.5))] = False
        elif placement == "only-between-samples":
            mask = ~sampled & (rng.random(n) < 0.3)
        elif placement == "best-masked-out":
            mask = upper < np.quantile(upper, 0.5)
        expected = select(lower, upper, k, mask)
        got = quant.candidates(q, k, index.n, mask=mask)[0]
        np.testing.assert_array_equal(np.sort(got), np.sort(expected))
        ids, _ = index.search(query, k, None)
        assert ids == brute_force(index, query, k)[0]


def test_searches_on_several_threads_at_once_match_the_same_searches_one_by_one():
    """The int8 search's reusable buffers (memindex/scratch.py) are per thread: searches of two
    tenants on one thread, and of one tenant on several threads at once, do not share them."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(11)
    dim = 32
    big, other = TenantIndex(dim, "cosine", quantize_from=100), TenantIndex(dim, "dot", quantize_from=100)
    big.add(**make_rows(rng, 5000, dim))
    other.add(**make_rows(rng, 3000, dim))
    queries = rng.normal(size=(40, dim)).astype(np.float32)
    filters = [None, Filters(min_reward=0.0)]
    jobs = [(index, q, 1 + i % 20, filters[i % 2]) for i, q in enumerate(queries) for index in (big, other)]
    alone = [index.search(q, k, flt)[0] for index, q, k, flt in jobs]
    assert alone == [brute_force(index, q, k, flt)[0] for index, q, k, flt in jobs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda job: job[0].search(job[1], job[2], job[3])[0], jobs * 5))
    assert together == alone * 5
