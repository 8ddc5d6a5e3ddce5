"""memindex/columns.py: filter columns, vocabularies and tag bits, through searches (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from memindex.columns import NO_EXPIRY, Filters, Vocab
from memindex.index import TenantIndex
from memindex.serialize import from_arrays, to_arrays
from tests.memindex.oracle import make_rows


def test_selective_filter_still_returns_every_match():
    rng = np.random.default_rng(1)
    rows = make_rows(rng, 2000, 8)
    rows["tags"] = [["rare"] if i % 500 == 0 else ["common"] for i in range(2000)]
    index = TenantIndex(8, "cosine")
    index.add(**rows)
    ids, _ = index.search(rng.normal(size=8).astype(np.float32), 10, Filters(tags_any=("rare",)))
    assert sorted(ids) == ["id0", "id1000", "id1500", "id500"]


def test_rare_tags_beyond_the_bitset_are_filtered_exactly():
    index = TenantIndex(2, "cosine")
    n = 600
    index.add(ids=[f"e{i}" for i in range(n)], embeddings=np.ones((n, 2), np.float32), seq=np.arange(n),
              timestamp=np.arange(n), reward=np.zeros(n), expires_at=np.full(n, NO_EXPIRY),
              task_id=["t"] * n, source=[None] * n, user_id=[None] * n, tags=[[f"tag{i}"] for i in range(n)])
    ids, _ = index.search(np.ones(2, np.float32), 5, Filters(tags_any=("tag599", "tag3", "tag300")))
    assert ids == ["e599", "e300", "e3"]
    index.remove(["e300"])
    ids, _ = index.search(np.ones(2, np.float32), 5, Filters(tags_all=("tag599",)))
    assert ids == ["e599"]


def test_expired_rows_are_invisible():
    index = TenantIndex(2, "cosine")
    index.add(ids=["a", "b"], embeddings=np.ones((2, 2), np.float32), seq=np.arange(2), timestamp=np.arange(2),
              reward=np.zeros(2), expires_at=np.array([100, NO_EXPIRY]), task_id=["t", "t"], source=[None] * 2,
              user_id=[None] * 2, tags=[[], []])
    assert index.search(np.ones(2, np.float32), 5, now_ms=99)[0] == ["b", "a"]
    assert index.search(np.ones(2, np.float32), 5, now_ms=100)[0] == ["b"]


def test_code_columns_widen_past_int16_and_keep_filtering():
    index = TenantIndex(2, "dot")
    n, batch = 40_000, 10_000
    for start in range(0, n, batch):
        index.add(ids=[f"e{i}" for i in range(start, start + batch)], embeddings=np.ones((batch, 2), np.float32),
                  seq=np.arange(start, start + batch), timestamp=np.arange(start, start + batch),
                  reward=np.zeros(batch), expires_at=np.full(batch, NO_EXPIRY),
                  task_id=[f"task-{i}" for i in range(start, start + batch)],
                  source=[None if i % 2 else "s" for i in range(start, start + batch)], user_id=[None] * batch,
                  tags=[[]] * batch)
        assert index.columns.task.dtype == (np.int16 if start + batch <= 32767 else np.int32)
    assert index.columns.source.dtype == np.int16
    copy = from_arrays(*to_arrays(index))
    assert copy.columns.task.dtype == np.int32 and copy.columns.source.dtype == np.int16
    for each in (index, copy):
        assert each.search(np.ones(2, np.float32), 3, Filters(task_id_prefix="task-39999"))[0] == ["e39999"]
        assert each.search(np.ones(2, np.float32), 2, Filters(task_id_prefix="task-1", source="s"))[0] == [
            "e19998", "e19996"]
        assert each.search(np.ones(2, np.float32), 1, Filters(task_id_prefix="task-0"))[0] == ["e0"]


def test_a_vocabulary_builds_its_codes_when_first_asked():
    vocab = Vocab(["t0", "t1"])
    assert vocab._codes is None  # a loaded index's vocabularies cost nothing until used
    assert vocab.code("t1") == 1 and vocab.code("t2") == 2
    assert vocab.codes == {"t0": 0, "t1": 1, "t2": 2} and vocab.strings == ["t0", "t1", "t2"]


def test_a_stored_vocabulary_that_repeats_a_value_is_refused():
    index = TenantIndex(4, "cosine")
    index.add(**make_rows(np.random.default_rng(1), 5, 4))
    arrays, meta = to_arrays(index)
    meta["tasks"] = [meta["tasks"][0], *meta["tasks"]]
    with pytest.raises(ValueError, match="vocabulary tasks repeats a value"):
        from_arrays({k: np.array(v) for k, v in arrays.items()}, meta)
