"""The compact id map against a plain list and dict, under random appends, removals and merges."""

from __future__ import annotations

import random
import uuid

import numpy as np
import pytest

from memindex import idmap as idmap_module
from memindex.idmap import IdMap, key_str, uuid_key


def test_only_canonical_uuids_get_a_key():
    eid = str(uuid.uuid4())
    assert key_str(uuid_key(eid)) == eid
    assert uuid_key(eid.upper()) is None  # would come back in another spelling
    assert uuid_key(eid.replace("-", "")) is None
    assert uuid_key(" " + eid[1:]) is None
    assert uuid_key("e1") is None
    assert key_str(uuid_key("00000000-0000-0000-0000-000000000000")) == "00000000-0000-0000-0000-000000000000"


def _ids(rng: random.Random, count: int) -> list[str]:
    out = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.6:
            out.append(str(uuid.UUID(int=rng.getrandbits(128))))
        elif kind < 0.8:  # trailing zero bytes: an S16 scalar would drop them
            out.append(str(uuid.UUID(bytes=rng.getrandbits(64).to_bytes(8, "big") + bytes(8))))
        elif kind < 0.9:
            out.append(str(uuid.UUID(int=rng.getrandbits(128))).upper())
        else:
            out.append(f"e{rng.getrandbits(40)}")
    return out


class Reference:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}

    def append(self, eid: str) -> None:
        self.pos[eid] = len(self.ids)
        self.ids.append(eid)

    def remove(self, eid: str) -> None:
        row = self.pos.pop(eid)
        last = self.ids.pop()
        if last != eid:
            self.ids[row] = last
            self.pos[last] = row


def _remove(m: IdMap, eid: str) -> None:
    """What TenantIndex.remove does: discard, move the last row into the hole, drop the last."""
    row = m.get(eid)
    m.discard(row)
    if row != m.n - 1:
        m.move(m.n - 1, row)
    m.pop_last()


@pytest.mark.parametrize("seed", range(6))
def test_random_operations_match_a_list_and_dict(seed, monkeypatch):
    monkeypatch.setattr(idmap_module, "MERGE_FROM", 8)  # merge often
    rng = random.Random(seed)
    m, ref = IdMap(4), Reference()
    gone: list[str] = []
    for _ in range(60):
        for eid in _ids(rng, rng.randrange(0, 30)) + rng.sample(gone, min(len(gone), 3)):
            if eid in ref.pos:
                continue
            if m.n == len(m.pos):
                m.grow(2 * len(m.pos))
            assert m.append(eid) == len(ref.ids)
            ref.append(eid)
            if eid in gone:
                gone.remove(eid)
        for eid in rng.sample(ref.ids, min(len(ref.ids), rng.randrange(0, 12))):
            _remove(m, eid)
            ref.remove(eid)
            gone.append(eid)
        if rng.random() < 0.2:
            m.merge()
        assert m.all() == ref.ids
        probe = rng.sample(ref.ids, min(len(ref.ids), 10)) + gone[-5:] + _ids(rng, 3)
        assert [m.get(e) for e in probe] == [ref.pos.get(e) for e in probe]
        assert m.find(probe).tolist() == [ref.pos.get(e, -1) for e in probe]
        copy = IdMap.from_ids(ref.ids)
        assert copy.all() == ref.ids and [copy.get(e) for e in probe] == [ref.pos.get(e) for e in probe]


def test_repeated_ids_are_refused_when_loaded():
    eid = str(uuid.uuid4())
    for ids in ([eid, "x", eid], ["x", "y", "x"]):
        with pytest.raises(ValueError, match="repeat"):
            IdMap.from_ids(ids)


def test_a_uuid_row_costs_tens_of_bytes():
    n = 20_000
    m = IdMap.from_ids([str(uuid.uuid4()) for _ in range(n)])
    assert m.nbytes() <= 28 * n
    assert np.array_equal(m.find(m.all()), np.arange(n))
