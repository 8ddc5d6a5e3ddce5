"""memindex/packed.py: an index as one byte string and back, answering as the original did."""

from __future__ import annotations

import numpy as np
import pytest

from memindex.columns import Filters
from memindex.index import TenantIndex
from memindex.packed import NotPackable, pack, unpack
from tests.memindex.oracle import assert_same_answers, make_rows

DIM = 8


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_pack_unpack_round_trip(metric):
    rng = np.random.default_rng(11)
    index = TenantIndex(DIM, metric)
    index.add(**make_rows(rng, 700, DIM))
    index.remove([f"id{i}" for i in range(0, 700, 9)])
    copy = unpack(pack(index))
    copy.check()
    assert len(copy) == len(index) and copy.ids == index.ids
    assert_same_answers(index, copy, rng)
    # It keeps working as an index: grows past its packed capacity, removes.
    more = make_rows(rng, 100, DIM, start=1000)
    for target in (index, copy):
        target.remove(["id1", "id5"])
        target.add(**more)
        target.check()
    assert_same_answers(index, copy, rng)


def test_a_writable_buffer_becomes_the_columns_without_a_copy():
    rng = np.random.default_rng(4)
    index = TenantIndex(DIM, "cosine")
    index.add(**make_rows(rng, 60, DIM))
    data = pack(index)
    buffer = bytearray(data)
    copy = unpack(buffer)
    assert np.shares_memory(copy.storage.emb, np.frombuffer(buffer, dtype=np.uint8))
    assert not np.shares_memory(unpack(data).storage.emb, np.frombuffer(data, dtype=np.uint8))  # bytes: copied
    for target in (index, copy):  # a removal writes the rows in place: into the adopted buffer
        target.remove(["id3", "id7"])
        target.check()
    assert bytes(buffer) != data
    assert_same_answers(index, copy, rng)


def test_an_empty_index_packs():
    copy = unpack(pack(TenantIndex(DIM, "cosine")))
    assert len(copy) == 0
    assert copy.search(np.ones(DIM, np.float32), 3, Filters())[0] == []


def test_damaged_or_foreign_bytes_are_refused():
    rng = np.random.default_rng(2)
    index = TenantIndex(DIM, "cosine")
    index.add(**make_rows(rng, 50, DIM))
    data = pack(index)
    with pytest.raises(ValueError, match="not a packed index"):
        unpack(b"PK\x03\x04" + data[4:])
    with pytest.raises(ValueError):
        unpack(data[: len(data) // 2])


def test_an_index_with_the_int8_copy_is_not_packed():
    rng = np.random.default_rng(3)
    index = TenantIndex(DIM, "cosine", quantize_from=10)
    index.add(**make_rows(rng, 40, DIM))
    index.ensure_quantized()
    with pytest.raises(NotPackable):
        pack(index)


def test_uuid_ids_travel_as_keys_and_come_back_the_same():
    import uuid

    rng = np.random.default_rng(12)
    rows = make_rows(rng, 300, DIM)
    rows["ids"] = [str(uuid.UUID(int=int(rng.integers(1 << 62)) << 64 | i)) for i in range(300)]
    index = TenantIndex(DIM, "cosine")
    index.add(**rows)  # 300 ids, still in the recent dict: pack merges them
    index.remove(rows["ids"][::7])
    data = pack(index)
    assert all(eid.encode() not in data for eid in rows["ids"][:20])  # keys, not id strings
    copy = unpack(data)
    copy.check()
    assert copy.ids == index.ids
    assert copy.idmap.get(rows["ids"][1]) == index.idmap.get(rows["ids"][1])
    assert copy.idmap.get(rows["ids"][0]) is None
    assert_same_answers(index, copy, rng)


def test_rows_mapped_from_a_file_count_as_page_cache_until_written(tmp_path):
    import mmap

    rng = np.random.default_rng(3)
    index = TenantIndex(DIM, "cosine")
    index.add(**make_rows(rng, 500, DIM))
    path = tmp_path / "image"
    path.write_bytes(pack(index))
    in_memory = unpack(pack(index))
    with open(path, "rb") as fh:
        mapped = unpack(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY))
    rows_bytes = 500 * DIM * 4
    assert in_memory.storage.nbytes() >= rows_bytes
    assert mapped.nbytes() == in_memory.nbytes() - rows_bytes  # the same index, its rows the page cache's
    assert_same_answers(in_memory, mapped, rng)
    mapped.remove(["id3"])  # the last row moves into the hole: a page of the map becomes private
    assert 0 < mapped.storage.nbytes() - mapped.storage.sqnorm.nbytes < rows_bytes
    mapped.add(**make_rows(rng, 1, DIM, start=900))  # into the freed slot: one more row written
    assert mapped.storage.mapped
    mapped.add(**make_rows(rng, 10, DIM, start=901))  # grows into fresh memory: all of it counted
    assert not mapped.storage.mapped and mapped.storage.nbytes() >= rows_bytes
    path.write_bytes(b"")  # the map keeps what it was made with (copies are replaced whole, never written)
