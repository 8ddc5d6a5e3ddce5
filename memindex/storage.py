"""Where an index's float32 rows live, behind one interface: in memory, or spilled to a row file.

A small tenant keeps its rows in memory (`InMemoryRows`: the matrix and its squared norms). Once
the int8 copy exists (quantized.py) only the candidates' rows are ever read, so the rows move to a
RowStore (rowstore.py: a file read with pread, outside the worker's memory) and the int8 copy, which
holds l2's squared norms, sits beside it (`SpilledRows`). Which of the two an index has is its
storage's type: the int8 copy, the row file, the matrix and the squared norms come and go together.

Rows live in a prefix [0, n) of capacity-sized columns, in the index's row order (capacity growth,
move-last-into-hole); the index passes n in.
"""

from __future__ import annotations

import mmap
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from .quantized import QuantizedColumns
from .rowstore import READ_CHUNK, RowStore


class RowStorage(ABC):
    """The float32 rows of an index (normalised for cosine) and the bounds search needs from them."""

    quant: QuantizedColumns | None  # the int8 copy, when the rows are spilled

    def __init__(self, dim: int, metric: str, capacity: int, row_sq_max: float = 0.0) -> None:
        self.dim = dim
        self.metric = metric
        self.capacity = capacity
        self.row_sq_max = row_sq_max  # the largest squared norm ever stored: a bound for search.narrow

    def set_vectors(self, start: int, vectors: np.ndarray) -> None:
        """Rows [start, start + len(vectors)) get these vectors (normalised for cosine)."""
        if not len(vectors):
            return
        if self.metric == "cosine":
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = (vectors / np.where(norms > 0, norms, 1)).astype(np.float32, copy=False)
        sq = np.einsum("ij,ij->i", vectors, vectors)
        self.row_sq_max = max(self.row_sq_max, float(sq.max()))
        self._write(start, vectors, sq)

    @abstractmethod
    def _write(self, start: int, vectors: np.ndarray, sq: np.ndarray) -> None:
        """Store rows [start, start + len(vectors)), their squared norms `sq` computed."""

    @abstractmethod
    def grow(self, capacity: int, n: int) -> None:
        """Room for `capacity` rows, rows [0, n) kept."""

    @abstractmethod
    def release(self, row: int) -> None:
        """Row `row` is being removed (before the last row moves into it)."""

    @abstractmethod
    def move(self, src: int, dst: int) -> None:
        """Row `src` moves to `dst` (the last row into a removed row's hole)."""

    @abstractmethod
    def read(self, rows: np.ndarray) -> np.ndarray:
        """The stored float32 rows, in that order."""

    @abstractmethod
    def chunked(self, rows: np.ndarray, score: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """score(matrix) over the rows' vectors, a bounded number of rows at a time when they come
        from the file."""

    @abstractmethod
    def dots(self, q: np.ndarray, rows: np.ndarray | None, n: int) -> np.ndarray:
        """Fast float32 (BLAS) dot products of `rows` (rows [0, n) when None) with q."""

    @abstractmethod
    def squared_norms(self, rows: np.ndarray | None, n: int) -> np.ndarray:
        """float32 squared norms of `rows` (rows [0, n) when None), rounded from exact sums."""

    @abstractmethod
    def read_all(self, n: int) -> np.ndarray:
        """Rows [0, n) as one array (a view of memory, or read from the file)."""

    @abstractmethod
    def nbytes(self) -> int:
        """What the rows cost this worker's memory."""

    @abstractmethod
    def check(self, capacity: int) -> None:
        """Raise AssertionError unless the storage holds `capacity` rows in its own shape."""


def file_mapped(a: np.ndarray) -> bool:
    """Whether `a` is a view of a memory-mapped file (a host's copy of an index image)."""
    base = a.base
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, mmap.mmap)


_PAGE = mmap.PAGESIZE


class InMemoryRows(RowStorage):
    """The rows as one float32 matrix with its squared norms, both capacity rows long."""

    quant = None

    def __init__(self, dim: int, metric: str, capacity: int, emb: np.ndarray | None = None,
                 sqnorm: np.ndarray | None = None) -> None:
        """Empty (zeroed) columns of `capacity` rows, or the given ones adopted as they are."""
        super().__init__(dim, metric, capacity)
        # Zeroed (calloc'd) pages: headroom beyond n costs no memory until rows land there.
        self.emb = np.zeros((capacity, dim), dtype=np.float32) if emb is None else emb
        self.sqnorm = np.zeros(capacity, dtype=np.float32) if sqnorm is None else sqnorm
        # Rows adopted from a copy-on-write map of a file are the page cache's (shared by the host's
        # workers, reclaimable), as a row file's are, until a write makes a page this worker's own
        # (moves, mostly: an adopted matrix is full, so a new row grows it into fresh memory).
        self.mapped = emb is not None and file_mapped(emb)
        self.rows_written = 0  # rows written in place since adoption: their pages are private

    def _write(self, start: int, vectors: np.ndarray, sq: np.ndarray) -> None:
        stop = start + len(vectors)
        self.sqnorm[start:stop] = sq
        self.emb[start:stop] = vectors
        self.rows_written += len(vectors)

    def grow(self, capacity: int, n: int) -> None:
        emb = np.zeros((capacity, self.dim), dtype=np.float32)
        emb[:n] = self.emb[:n]
        sqnorm = np.zeros(capacity, dtype=np.float32)
        sqnorm[:n] = self.sqnorm[:n]
        self.emb, self.sqnorm, self.capacity = emb, sqnorm, capacity
        self.mapped = False

    def release(self, row: int) -> None:
        pass  # the row is overwritten by the move, or left beyond n

    def move(self, src: int, dst: int) -> None:
        self.emb[dst] = self.emb[src]
        self.sqnorm[dst] = self.sqnorm[src]
        self.rows_written += 1

    def read(self, rows: np.ndarray) -> np.ndarray:
        return self.emb[rows]

    def chunked(self, rows: np.ndarray, score: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        return score(self.emb[rows])

    def dots(self, q: np.ndarray, rows: np.ndarray | None, n: int) -> np.ndarray:
        return self.emb[:n] @ q if rows is None else self.emb[rows] @ q

    def squared_norms(self, rows: np.ndarray | None, n: int) -> np.ndarray:
        return self.sqnorm[:n] if rows is None else self.sqnorm[rows]

    def read_all(self, n: int) -> np.ndarray:
        return self.emb[:n]

    def nbytes(self) -> int:
        if self.mapped:  # the pages writes made private (a row spans at most two more pages)
            return min(self.emb.nbytes, self.rows_written * (self.emb.itemsize * self.dim + _PAGE)) + self.sqnorm.nbytes
        return self.emb.nbytes + self.sqnorm.nbytes

    def check(self, capacity: int) -> None:
        if self.emb.shape != (capacity, self.dim) or self.sqnorm.shape != (capacity,):
            raise AssertionError(f"in-memory rows: {self.emb.shape} and {self.sqnorm.shape}, capacity {capacity}")

    def spill(self, n: int, directory: str | None) -> SpilledRows:
        """The same rows as SpilledRows: the int8 copy built and the rows written to a row file in
        READ_CHUNK pieces, never a second whole float32 matrix."""
        quant = QuantizedColumns(self.dim, self.capacity, self.metric)
        store = RowStore(self.dim, self.capacity, directory)
        for a in range(0, n, READ_CHUNK):
            part = self.emb[a : min(n, a + READ_CHUNK)]
            quant.set_rows(a, part)
            store.append(a, part)
        return SpilledRows(self.dim, self.metric, self.capacity, store, quant, self.row_sq_max)


class SpilledRows(RowStorage):
    """The rows in a RowStore (read with pread), and the int8 copy that search scans instead."""

    quant: QuantizedColumns

    def __init__(self, dim: int, metric: str, capacity: int, rows: RowStore, quant: QuantizedColumns,
                 row_sq_max: float) -> None:
        super().__init__(dim, metric, capacity, row_sq_max)
        self.rows = rows
        self.quant = quant

    def _write(self, start: int, vectors: np.ndarray, sq: np.ndarray) -> None:
        # Streamed: to the row file and the int8 copy (which computes its own norms).
        self.rows.append(start, vectors)
        self.quant.set_rows(start, vectors)

    def grow(self, capacity: int, n: int) -> None:
        self.rows.grow(capacity, n)
        self.quant.grow(capacity, n)
        self.capacity = capacity

    def release(self, row: int) -> None:
        self.rows.release(row)  # its private slot may be reused

    def move(self, src: int, dst: int) -> None:
        self.quant.move(src, dst)
        self.rows.move(src, dst)

    def read(self, rows: np.ndarray) -> np.ndarray:
        return self.rows.read(rows)

    def chunked(self, rows: np.ndarray, score: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        if rows.size <= READ_CHUNK:
            return score(self.rows.read(rows))
        return np.concatenate([score(self.rows.read(rows[a : a + READ_CHUNK]))
                               for a in range(0, rows.size, READ_CHUNK)])

    def dots(self, q: np.ndarray, rows: np.ndarray | None, n: int) -> np.ndarray:
        return self.chunked(np.arange(n) if rows is None else rows, lambda matrix: matrix @ q)

    def squared_norms(self, rows: np.ndarray | None, n: int) -> np.ndarray:
        return self.quant.sq32[:n] if rows is None else self.quant.sq32[rows]

    def read_all(self, n: int) -> np.ndarray:
        return self.rows.read_range(0, n)

    def nbytes(self) -> int:
        # The float32 rows are in the page cache (shared, reclaimable), not here.
        return self.rows.nbytes() + self.quant.nbytes()

    def check(self, capacity: int) -> None:
        if self.rows.capacity != capacity or self.quant.codes.shape[0] != capacity:
            raise AssertionError(f"spilled rows: row file of {self.rows.capacity}, "
                                 f"int8 copy of {self.quant.codes.shape[0]}, capacity {capacity}")
