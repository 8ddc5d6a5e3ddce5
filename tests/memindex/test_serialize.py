"""memindex/serialize.py: an index to arrays and back (no database)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from memindex.columns import BITSET_TAGS, NO_EXPIRY, Filters
from memindex.index import TenantIndex
from memindex.serialize import from_arrays, to_arrays
from tests.memindex.oracle import assert_same_answers, make_rows

DIM = 8


def test_tag_words_widen_as_the_vocabulary_grows_and_survive_a_checkpoint():
    rng = np.random.default_rng(5)
    index = TenantIndex(4, "dot")
    ids, tags = [], []
    for batch in range(6):  # each batch brings 50 new tags: the bitset widens from 1 to 4 words, then posts
        m = 40
        new_ids = [str(uuid.UUID(int=int(rng.integers(2**62)) << 64)) for _ in range(m)]
        new_tags = [[f"t{int(rng.integers(0, 50 * (batch + 1)))}" for _ in range(2)] for _ in range(m)]
        index.add(ids=new_ids, embeddings=rng.normal(size=(m, 4)).astype(np.float32),
                  seq=np.arange(len(ids), len(ids) + m), timestamp=np.zeros(m, np.int64), reward=np.zeros(m),
                  expires_at=np.full(m, NO_EXPIRY), task_id=["t"] * m, source=[None] * m, user_id=[None] * m,
                  tags=new_tags)
        ids += new_ids
        tags += new_tags
    copy = from_arrays(*to_arrays(index))
    for probe in ("t0", "t63", "t64", "t130", "t255", "t256", "t299"):
        expected = {eid for eid, row in zip(ids, tags, strict=True) if probe in row}
        for each in (index, copy):
            found, _ = each.search(np.ones(4, np.float32), len(ids), Filters(tags_any=(probe,)))
            assert set(found) == expected, probe


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_to_arrays_from_arrays_round_trip(metric):
    rng = np.random.default_rng(5)
    rows = make_rows(rng, 500, DIM)
    index = TenantIndex(DIM, metric)
    index.add(**rows)
    extra = make_rows(rng, 300, DIM, start=500)
    extra["tags"] = [[f"t{i}-{j}" for j in range(2)] for i in range(300)]  # 600 tags: beyond the bitset
    index.add(**extra)
    index.remove([f"id{i}" for i in range(0, 800, 7)])
    assert len(index.columns.tags.strings) > BITSET_TAGS
    arrays, meta = to_arrays(index)
    copy = from_arrays({k: v.copy() for k, v in arrays.items()}, meta)
    copy.check()
    assert len(copy) == len(index) and copy.ids == index.ids
    assert_same_answers(index, copy, rng)
    rare_tag = "t299-1"
    assert copy.search(extra["embeddings"][299], 5, Filters(tags_all=(rare_tag,)))[0] == ["id799"]
    # The copy keeps working as an index: mutate both the same way.
    more = make_rows(rng, 50, DIM, start=1000)
    for target in (index, copy):
        target.remove(["id1", "id2", "id799"])
        target.add(**more)
        target.check()
    assert_same_answers(index, copy, rng)


def test_arrays_that_do_not_fit_together_are_refused():
    rng = np.random.default_rng(4)
    index = TenantIndex(DIM, "dot")
    index.add(**make_rows(rng, 30, DIM))
    arrays, meta = to_arrays(index)

    def refused(arrays: dict, meta: dict, match: str) -> None:
        with pytest.raises(ValueError, match=match):
            from_arrays({k: v.copy() for k, v in arrays.items()}, meta)

    refused({**arrays, "reward": arrays["reward"].astype(np.float32)}, meta, "column reward")
    refused({**arrays, "seq": arrays["seq"][:-1]}, meta, "column seq")
    refused(arrays, {**meta, "ids": meta["ids"][:-1]}, "row count")
    refused(arrays, {**meta, "tasks": [*meta["tasks"], meta["tasks"][0]]}, "vocabulary tasks")
    from_arrays({k: v.copy() for k, v in arrays.items()}, meta).check()  # the untouched ones load
