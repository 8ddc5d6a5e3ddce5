"""An index as arrays and a JSON-able dict, and back: what a checkpoint stores (the app's
episodes/checkpoint.py writes and reads the files).

The per-row columns are ARRAY_COLUMNS, plus the int8 copy (`quant_<name>`) when the index has
built it, and the keyword column's postings (KEYWORD_COLUMNS; absent from checkpoints written before
episodes had text, whose rows then have none). Vocabulary code columns are int32 and tag bits WORDS wide and row-major whatever their
width in memory.
"""

from __future__ import annotations

import numpy as np

from .columns import CODE_COLUMNS, NO_EXPIRY, WORDS, FilterColumns, Vocab, tag_layout
from .idmap import IdMap
from .index import TenantIndex
from .keyword import KeywordColumn
from .quantized import QuantizedColumns, stored_columns
from .rowstore import READ_CHUNK, RowStore
from .storage import InMemoryRows, SpilledRows

# The per-row columns of an index and their dtypes (what a checkpoint stores).
ARRAY_COLUMNS: dict[str, np.dtype] = {
    "emb": np.dtype(np.float32), "sqnorm": np.dtype(np.float32), "seq": np.dtype(np.int64),
    "timestamp": np.dtype(np.int64), "reward": np.dtype(np.float64), "expires": np.dtype(np.int64),
    "task": np.dtype(np.int32), "source": np.dtype(np.int32), "user": np.dtype(np.int32),
    "tagbits": np.dtype(np.uint64),
}
# The keyword column: postings by term (rows), their term frequencies, each row's token count.
KEYWORD_COLUMNS: dict[str, np.dtype] = {
    "kw_indptr": np.dtype(np.int64), "kw_rows": np.dtype(np.int32), "kw_tfs": np.dtype(np.int32),
    "kw_doclen": np.dtype(np.int32),
}
_FILTER_ARRAYS = ("seq", "timestamp", "reward", *CODE_COLUMNS)  # adopted as they are, as filter columns


def quant_columns(metric: str) -> dict[str, np.dtype]:
    """The int8 copy's columns (quantized.QuantizedColumns) of an index of this metric, stored as
    quant_<name> when it was built."""
    return {name: np.dtype(QuantizedColumns.DTYPES[name]) for name in stored_columns(metric)}


def _column_shapes(dim: int, n: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {name: (n,) for name in ARRAY_COLUMNS}
    shapes["emb"] = (n, dim)
    shapes["tagbits"] = (n, WORDS)
    return shapes


def to_arrays(index: TenantIndex) -> tuple[dict[str, np.ndarray], dict]:
    """Everything needed to rebuild this index: the row columns (views of the first n rows: copy
    them or hold the caller's lock while using them; `emb` of spilled rows is a fresh array read
    from the row file), the int8 copy when built (`quant_*`), and a JSON-able dict of ids and
    vocabularies."""
    n, columns, storage = index.n, index.columns, index.storage
    arrays = {name: getattr(columns, name)[:n] for name in _FILTER_ARRAYS}
    arrays["expires"] = (np.full(n, NO_EXPIRY, dtype=np.int64) if columns.expires is None
                         else columns.expires[:n])
    for name in CODE_COLUMNS:  # int32 in a checkpoint whatever the width in memory
        arrays[name] = arrays[name].astype(np.int32)
    # Stored row-major (one row's words together) and always WORDS wide.
    arrays["tagbits"] = np.zeros((n, WORDS), dtype=np.uint64)
    arrays["tagbits"][:, : columns.tagwords.shape[0]] = columns.tagwords[:, :n].T
    arrays["emb"] = storage.read_all(n)
    if isinstance(storage, InMemoryRows):
        arrays["sqnorm"] = storage.sqnorm[:n]
    else:  # spilled rows keep no squared norms: computed as set_vectors did, from the same rows
        arrays["sqnorm"] = np.einsum("ij,ij->i", arrays["emb"], arrays["emb"])
        arrays.update({f"quant_{name}": getattr(storage.quant, name)[:n] for name in quant_columns(index.metric)})
    keyword, terms = index.keyword.to_arrays(n)
    arrays.update(keyword)
    meta = {
        "terms": terms,
        "dim": index.dim, "metric": index.metric, "n": n, "ids": index.idmap.all(),
        "tasks": list(columns.tasks.strings), "sources": list(columns.sources.strings),
        "users": list(columns.users.strings), "tags": list(columns.tags.strings),
        # rare tag codes per row position: the posting sets are rebuilt from them
        "rare": [[index.idmap.get(eid), list(codes)] for eid, codes in columns.row_rare.items()],
    }
    return arrays, meta


def from_arrays(arrays: dict, meta: dict, spill_dir: str | None = None, idmap: IdMap | None = None) -> TenantIndex:
    """The inverse of to_arrays (ValueError when the arrays or meta do not fit together). The arrays
    are adopted, not copied: pass writable ones (a copy-on-write memory map is fine); they are
    replaced by copies when the index grows. With the int8 copy, `emb` may be a RowStore of the n
    rows (a checkpoint's file, read in place).

    Not split: it is one sequence of checks and adoptions in the order the parts depend on each
    other (shapes, ids, vocabularies, tag words, rare tags, storage), each a few lines."""
    n = int(meta["n"])
    index = TenantIndex(int(meta["dim"]), meta["metric"], capacity=0, spill_dir=spill_dir)
    dim, metric = index.dim, index.metric
    emb = arrays["emb"]
    quantized = all(f"quant_{name}" in arrays for name in quant_columns(metric))
    if isinstance(emb, RowStore) and (not quantized or emb.dim != dim or emb.capacity != n):
        raise ValueError("a row file is only usable with the int8 copy and for the n rows")
    for name, shape in _column_shapes(dim, n).items():
        if name == "emb" and isinstance(emb, RowStore):
            continue
        column = arrays[name]
        if column.shape != shape or column.dtype != ARRAY_COLUMNS[name]:
            raise ValueError(f"column {name}: expected {shape} {ARRAY_COLUMNS[name]}, "
                             f"got {column.shape} {column.dtype}")
    ids = meta["ids"] if idmap is None else None  # `idmap`: already built (a packed index's keys)
    if len(ids if idmap is None else idmap) != n:
        raise ValueError("ids do not match the row count")
    index.idmap = IdMap.from_ids(ids) if idmap is None else idmap  # ValueError when one repeats
    index.capacity = n
    columns = index.columns = FilterColumns(0)
    for name in _FILTER_ARRAYS:
        setattr(columns, name, arrays[name])
    columns.capacity = n
    for attr, key in (("tasks", "tasks"), ("sources", "sources"), ("users", "users"), ("tags", "tags")):
        vocab = Vocab(meta[key])
        if len(set(vocab.strings)) != len(vocab.strings):
            raise ValueError(f"vocabulary {key} repeats a value")
        setattr(columns, attr, vocab)
    words, dtype = tag_layout(len(columns.tags.strings))  # the words beyond are zero
    columns.tagwords = np.ascontiguousarray(arrays["tagbits"][:, :words].T, dtype=dtype)
    columns.fit_codes()  # int32 in the checkpoint: int16 where the vocabulary fits
    for row, codes in meta["rare"]:
        columns.note_rare(index.idmap.id_of(row) if ids is None else ids[row], tuple(int(c) for c in codes))
    columns.expires = arrays["expires"]
    columns.expiring = int(np.count_nonzero(columns.expires[:n] != NO_EXPIRY))
    if not columns.expiring:
        columns.expires = None  # no row expires: no column kept
    if "kw_doclen" in arrays:
        for name, dtype in KEYWORD_COLUMNS.items():
            if arrays[name].dtype != dtype:
                raise ValueError(f"column {name}: expected {dtype}, got {arrays[name].dtype}")
        index.keyword = KeywordColumn.from_arrays(arrays, meta.get("terms", []), n)
    else:  # written before episodes had text
        index.keyword = KeywordColumn(n)
    row_sq_max = float(arrays["sqnorm"].max()) if n else 0.0
    if not quantized:
        index.storage = InMemoryRows(dim, metric, n, emb=emb, sqnorm=arrays["sqnorm"])
        index.storage.row_sq_max = row_sq_max
        return index
    quant = QuantizedColumns(dim, 0, metric)
    for name, dtype in quant_columns(metric).items():
        column = arrays[f"quant_{name}"]
        shape = (n, dim) if name == "codes" else (n,)
        if column.shape != shape or column.dtype != dtype:
            raise ValueError(f"column quant_{name}: expected {shape} {dtype}, got {column.shape} {column.dtype}")
        setattr(quant, name, column)
    quant.derive(n)
    if isinstance(emb, RowStore):
        rows = emb
    else:
        rows = RowStore(dim, n, spill_dir)
        for a in range(0, n, READ_CHUNK):
            rows.append(a, emb[a : min(n, a + READ_CHUNK)])
    index.storage = SpilledRows(dim, metric, n, rows, quant, row_sq_max)
    return index
