"""memindex/quantized.py: the int8 copy's candidates and scans against float64 references (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from memindex.index import TenantIndex
from tests.memindex.oracle import adversarial_rows, make_rows


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
@pytest.mark.parametrize("kind", ["clustered", "duplicates", "near-ties", "all-equal", "outliers"])
@pytest.mark.parametrize("magnitude", [1e-3, 1.0, 1e4])
@pytest.mark.parametrize("dim", [8, 96, 1100])  # 1100: integer dot products beyond float32's exact range
def test_fast_candidate_selection_equals_the_float64_reference(metric, kind, magnitude, dim):
    """quantized.candidates (float32 pre-selection, float64 bounds on the survivors) picks exactly the
    rows that the float64 bounds of every row pick, whole, masked or gathered."""
    from memindex.quantized import select

    rng = np.random.default_rng(hash((metric, kind, dim, magnitude)) % 2**32)
    n = 1200 if dim < 1000 else 300
    rows = make_rows(rng, n, dim)
    rows["embeddings"] = adversarial_rows(rng, kind, n, dim) * np.float32(magnitude)
    index = TenantIndex(dim, metric, quantize_from=100)
    index.add(**rows)
    index.ensure_quantized()
    quant = index.storage.quant
    for trial in range(9):
        if trial % 3 == 0:
            query = rows["embeddings"][rng.integers(n)].copy()
        else:
            query = rng.normal(size=dim).astype(np.float32) * np.float32(rng.choice([1e-3, 1.0, 50.0]))
        q = index.prepare_query(query)
        k = int(rng.choice([1, 5, 50]))
        lower, upper = quant.bounds(q, index.n)
        if trial % 3 == 0:
            expected, got = select(lower, upper, k, None), quant.candidates(q, k, index.n)[0]
        elif trial % 3 == 1:
            mask = rng.random(index.n) < 0.5
            expected, got = select(lower, upper, k, mask), quant.candidates(q, k, index.n, mask=mask)[0]
        else:
            subset = np.flatnonzero(rng.random(index.n) < 0.1)
            expected = subset[select(lower[subset], upper[subset], k, None)]
            got = quant.candidates(q, k, index.n, rows=subset)[0]
        np.testing.assert_array_equal(np.sort(got), np.sort(expected))


@pytest.mark.parametrize("dim", [8, 96, 1100])  # 1100: the scan's float64 output
@pytest.mark.parametrize("parts", [2, 3])
def test_a_scan_cut_into_parts_on_threads_gives_the_same_integers(dim, parts, monkeypatch):
    from memindex import quantized

    rng = np.random.default_rng(dim * 10 + parts)
    n = 1001  # parts of unequal length
    index = TenantIndex(dim, "dot", quantize_from=100)
    index.add(**make_rows(rng, n, dim))
    index.ensure_quantized()
    q_codes = quantized.quantize(rng.normal(size=(1, dim)).astype(np.float32))[0]
    whole = index.storage.quant._scan(q_codes, index.storage.quant.codes[:n]).copy()  # the next scan reuses its buffer
    monkeypatch.setattr(quantized, "SCAN_SPLIT_FROM", 10)
    monkeypatch.setattr(quantized, "SCAN_PARTS", parts)
    cut = index.storage.quant._scan(q_codes, index.storage.quant.codes[:n])
    exact = index.storage.quant.codes[:n].astype(np.int64) @ q_codes[0].astype(np.int64)
    assert cut.dtype == whole.dtype and np.array_equal(cut, whole) and np.array_equal(cut, exact)
    gathered = np.flatnonzero(rng.random(n) < 0.4)
    assert np.array_equal(index.storage.quant._scan(q_codes, index.storage.quant.codes[gathered]), exact[gathered])


@pytest.mark.parametrize("parts", [1, 2])
def test_scans_leave_the_reference_count_of_none_as_they_found_it(parts, monkeypatch):
    # simsimd 6.5's cdist(out=...) returns None without owning a reference: uncorrected, every scan
    # lowers None's count by one and a long-lived worker aborts (Python 3.11's None is not immortal).
    import sys

    from memindex import quantized

    rng = np.random.default_rng(7)
    index = TenantIndex(16, "dot", quantize_from=100)
    index.add(**make_rows(rng, 500, 16))
    index.ensure_quantized()
    monkeypatch.setattr(quantized, "SCAN_SPLIT_FROM", 10)
    monkeypatch.setattr(quantized, "SCAN_PARTS", parts)
    q_codes = quantized.quantize(rng.normal(size=(1, 16)).astype(np.float32))[0]
    codes = index.storage.quant.codes[:500]
    index.storage.quant._scan(q_codes, codes)  # the pool's threads exist before counting
    before = sys.getrefcount(None)
    for _ in range(2000):
        index.storage.quant._scan(q_codes, codes)
    assert abs(sys.getrefcount(None) - before) < 100
