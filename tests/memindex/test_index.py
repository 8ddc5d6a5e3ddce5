"""memindex/index.py: adds, updates and removals keep the parts of an index consistent (no database)."""

from __future__ import annotations

import numpy as np

from memindex.columns import NO_EXPIRY, Filters
from memindex.index import TenantIndex
from tests.memindex.oracle import make_rows, oracle, random_filters


def test_removal_and_update_keep_the_index_consistent():
    rng = np.random.default_rng(3)
    dim = 8
    rows = make_rows(rng, 300, dim)
    index = TenantIndex(dim, "dot")
    index.add(**rows)
    gone = set(rng.choice(rows["ids"], size=120, replace=False).tolist())
    assert index.remove(sorted(gone) + ["unknown"]) == 120
    keep = [i for i, eid in enumerate(rows["ids"]) if eid not in gone]
    kept = {key: ([v[i] for i in keep] if isinstance(v, list) else v[keep]) for key, v in rows.items()}
    # An update of filter columns (as a PATCH would do) on some surviving rows.
    for j in range(0, len(keep), 7):
        kept["reward"][j] = 5.0
        kept["tags"][j] = ["patched"]
    index.add(**kept)
    assert len(index) == len(keep)
    for _ in range(40):
        query = rng.normal(size=dim).astype(np.float32)
        flt = random_filters(rng)
        ids, _ = index.search(query, 15, flt)
        expected, scores = oracle(kept, "dot", query, 15, flt)
        np.testing.assert_allclose([scores[i] for i in ids], [scores[i] for i in expected], atol=1e-4)
    ids, _ = index.search(rng.normal(size=dim).astype(np.float32), 1000, Filters(tags_all=("patched",)))
    assert len(ids) == len(range(0, len(keep), 7))


def test_an_id_given_twice_in_one_add_is_one_row_with_the_last_values():
    index = TenantIndex(2, "dot")
    index.add(ids=["x", "y", "x"], embeddings=np.eye(2, dtype=np.float32)[[0, 1, 1]], seq=np.arange(3),
              timestamp=np.zeros(3, np.int64), reward=np.array([1.0, 2.0, 3.0]),
              expires_at=np.array([5, NO_EXPIRY, NO_EXPIRY]), task_id=["t"] * 3, source=[None] * 3,
              user_id=[None] * 3, tags=[["rare-x"], [], []])
    assert len(index) == 2 and index.ids == ["x", "y"]
    assert index.columns.expiring == 0  # x's final expiry is NO_EXPIRY
    found, scores = index.search(np.array([1.0, 0.0], np.float32), 2, Filters(min_reward=2.5))
    assert found == ["x"] and scores.tolist() == [1.0]  # the first embedding, the last reward
    assert index.search(np.ones(2, np.float32), 2, Filters(tags_any=("rare-x",)))[0] == []
