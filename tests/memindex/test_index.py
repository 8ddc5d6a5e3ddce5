"""memindex/index.py: adds, updates and removals keep the parts of an index consistent (no database)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memindex.columns import BITSET_TAGS, NO_EXPIRY, Filters
from memindex.index import TenantIndex
from memindex.serialize import from_arrays, to_arrays
from memindex.storage import InMemoryRows, SpilledRows
from tests.memindex.oracle import make_rows, oracle, random_filters


def test_removal_and_update_keep_the_index_consistent():
    rng = np.random.default_rng(3)
    dim = 8
    rows = make_rows(rng, 300, dim)
    index = TenantIndex(dim, "dot")
    index.add(**rows)
    gone = set(rng.choice(rows["ids"], size=120, replace=False).tolist())
    assert index.remove(sorted(gone) + ["unknown"]) == 120
    index.check()
    keep = [i for i, eid in enumerate(rows["ids"]) if eid not in gone]
    kept = {key: ([v[i] for i in keep] if isinstance(v, list) else v[keep]) for key, v in rows.items()}
    # An update of filter columns (as a PATCH would do) on some surviving rows.
    for j in range(0, len(keep), 7):
        kept["reward"][j] = 5.0
        kept["tags"][j] = ["patched"]
    index.add(**kept)
    index.check()
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
    index.check()
    found, scores = index.search(np.array([1.0, 0.0], np.float32), 2, Filters(min_reward=2.5))
    assert found == ["x"] and scores.tolist() == [1.0]  # the first embedding, the last reward
    assert index.search(np.ones(2, np.float32), 2, Filters(tags_any=("rare-x",)))[0] == []


@pytest.mark.parametrize("quantize_from", [100, 10**9])
def test_the_parts_stay_consistent_through_growth_churn_spilling_and_a_round_trip(quantize_from):
    """check() after every step: adds that grow the capacity, rare tags past the bitset, expiring
    rows, updates, removals, the move to the row file, and from_arrays of the result."""
    rng = np.random.default_rng(21)
    dim = 8
    index = TenantIndex(dim, "l2", quantize_from=quantize_from)
    index.check()
    for batch in range(8):
        rows = make_rows(rng, 90, dim, start=batch * 90)
        rows["tags"] = [[*tags, f"t{int(rng.integers(BITSET_TAGS + 40))}"] for tags in rows["tags"]]
        rows["expires_at"] = np.where(rng.random(90) < 0.3, 10**12, NO_EXPIRY)
        index.add(**rows)
        index.check()
        again = {key: value[:30] for key, value in rows.items()}  # updates: new filter values
        again["expires_at"] = np.full(30, NO_EXPIRY)
        again["tags"] = [["rare-again", f"t{BITSET_TAGS + 1}"]] * 30
        index.add(**again)
        index.check()
        index.remove(rng.choice(index.ids, size=25, replace=False).tolist())
        index.check()
        if batch == 3:
            index.search(rng.normal(size=dim).astype(np.float32), 5)  # may build the int8 copy
            index.check()
    assert isinstance(index.storage, SpilledRows if quantize_from == 100 else InMemoryRows)
    copy = from_arrays(*to_arrays(index))
    copy.check()
    assert type(copy.storage) is type(index.storage)
    copy.add(**make_rows(rng, 50, dim, start=10_000))
    copy.check()


def test_check_finds_parts_that_disagree():
    rng = np.random.default_rng(2)
    index = TenantIndex(4, "dot", quantize_from=100)
    index.add(**make_rows(rng, 200, 4))
    index.check()
    index.columns.expiring += 1
    with pytest.raises(AssertionError, match="expiring"):
        index.check()
    index.columns.expiring -= 1
    index.ensure_quantized()
    index.check()
    index.storage.capacity += 1
    with pytest.raises(AssertionError, match="capacity"):
        index.check()


def test_the_package_imports_nothing_of_the_app_nor_django():
    code = ("import sys, memindex.index, memindex.serialize, memindex.search, memindex.storage, memindex.columns; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'episodes', 'tenants', 'memcloud', "
            "'ops', 'core', 'rest_framework'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == "[]"
