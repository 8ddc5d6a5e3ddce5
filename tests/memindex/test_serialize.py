"""memindex/serialize.py: an index to arrays and back (no database)."""

from __future__ import annotations

import uuid

import numpy as np

from memindex.columns import NO_EXPIRY, Filters
from memindex.index import TenantIndex
from memindex.serialize import from_arrays, to_arrays


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
