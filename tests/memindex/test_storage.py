"""memindex/storage.py: rows spilled to the row file beside the int8 copy (no database)."""

from __future__ import annotations

import numpy as np

from memindex.index import TenantIndex
from memindex.storage import SpilledRows
from tests.memindex.oracle import brute_force, make_rows


def test_certified_search_follows_adds_and_removals():
    rng = np.random.default_rng(5)
    dim = 32
    rows = make_rows(rng, 3000, dim)
    index = TenantIndex(dim, "cosine", quantize_from=500)
    index.add(**rows)
    index.search(rng.normal(size=dim).astype(np.float32), 5)  # builds the int8 copy
    assert index.storage.rows.slot is None  # every row at its own slot: no map kept
    index.remove(rows["ids"][::3])
    assert index.storage.rows.slot is not None
    more = make_rows(rng, 700, dim, start=10_000)
    more["embeddings"] *= 40  # other norms: other per-row scales
    index.add(**more)
    from memindex.quantized import quantize

    # The int8 columns still mirror the float32 rows after growth, moves and appends, and the row
    # file holds each id's own (normalised) vector, removed rows' slots reused.
    assert isinstance(index.storage, SpilledRows)
    stored = index.storage.read(np.arange(index.n))
    np.testing.assert_array_equal(index.storage.quant.codes[: index.n], quantize(stored)[0])
    given = dict(zip(rows["ids"] + more["ids"], np.concatenate([rows["embeddings"], more["embeddings"]]),
                     strict=True))
    expected = np.array([given[eid] for eid in index.ids], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(stored, expected, rtol=1e-6, atol=1e-7)
    assert index.storage.rows._fresh == 3000  # the 700 new rows went into the 1000 freed slots
    for _ in range(20):
        query = rng.normal(size=dim).astype(np.float32)
        assert index.search(query, 10)[0] == brute_force(index, query, 10)[0]
