"""A small index as one byte string and back: what a worker that has never seen a tenant loads in
one read instead of building the index row by row (the app keeps it in the database, episodes/images.py).

Layout: MAGIC, a little-endian uint32 length and that many bytes of JSON (serialize.to_arrays's meta
plus each column's dtype and shape), then the columns in the meta's order, each starting at a
multiple of 8 bytes. Unpacking adopts views of one writable buffer as the columns (from_arrays
wants writable arrays): the caller's own when it hands over a writable one (a bytearray, a
copy-on-write memory map of a file: no copy at all), else one copy of the string; then one sort of
the ids' 16-byte keys (stored in row order when every id is a canonical UUID), no per-row Python work.

Only indexes without the int8 copy (below quantize_from rows): a large tenant's checkpoint
(files, read in place) is the route for those."""

from __future__ import annotations

import struct

import numpy as np
import orjson

from .idmap import IdMap
from .index import TenantIndex
from .serialize import from_arrays, to_arrays

MAGIC = b"MCIX1\x00\x00\x00"
_ALIGN = 8


class NotPackable(ValueError):
    """The index has the int8 copy (or spilled rows): it is not packed."""


def pack(index: TenantIndex) -> bytes:
    """The index as one byte string (hold the index's lock while packing)."""
    if index.storage.quant is not None:
        raise NotPackable("an index with the int8 copy is checkpointed, not packed")
    keys = index.idmap.keys_in_row_order()  # before to_arrays: it may merge the recent ids
    arrays, meta = to_arrays(index)
    if keys is not None:  # the ids as 16-byte keys: no id strings to parse when unpacking
        arrays["idkeys"], meta["ids"] = keys, None
    layout, offset = [], 0
    for name, column in arrays.items():
        column = np.ascontiguousarray(column)
        arrays[name] = column
        layout.append([name, column.dtype.str, list(column.shape), offset])
        offset += -(-column.nbytes // _ALIGN) * _ALIGN
    head = orjson.dumps({**meta, "layout": layout})
    start = -(-(len(MAGIC) + 4 + len(head)) // _ALIGN) * _ALIGN
    out = bytearray(start + offset)
    out[: len(MAGIC)] = MAGIC
    out[len(MAGIC) : len(MAGIC) + 4] = struct.pack("<I", len(head))
    out[len(MAGIC) + 4 : len(MAGIC) + 4 + len(head)] = head
    for name, _dtype, _shape, at in layout:
        data = arrays[name].tobytes()
        out[start + at : start + at + len(data)] = data
    return bytes(out)


def unpack(data: bytes | bytearray | memoryview, spill_dir: str | None = None) -> TenantIndex:
    """The index packed in `data` (ValueError when it is not one, or is damaged). A writable
    `data` becomes the columns' storage as it is: the caller hands it over and writes it no more."""
    view = memoryview(data).cast("B")
    # A 1,000-episode image is 1.6 MB: a copy of it into fresh pages cost 1-3 ms of a cold query.
    buffer = view if not view.readonly else memoryview(bytearray(view))
    if len(buffer) < len(MAGIC) + 4 or buffer[: len(MAGIC)] != MAGIC:
        raise ValueError("not a packed index")
    (length,) = struct.unpack_from("<I", buffer, len(MAGIC))
    head_end = len(MAGIC) + 4 + length
    if head_end > len(buffer):
        raise ValueError("packed index truncated in its header")
    meta = orjson.loads(buffer[len(MAGIC) + 4 : head_end])
    start = -(-head_end // _ALIGN) * _ALIGN
    arrays = {}
    for name, dtype, shape, at in meta.pop("layout"):
        dtype = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        if start + at + count * dtype.itemsize > len(buffer):
            raise ValueError(f"packed index truncated in column {name}")
        arrays[name] = np.frombuffer(buffer, dtype=dtype, count=count, offset=start + at).reshape(shape)
    keys = arrays.pop("idkeys", None)
    idmap = None if keys is None else IdMap.from_keys(keys)
    return from_arrays(arrays, meta, spill_dir=spill_dir, idmap=idmap)
