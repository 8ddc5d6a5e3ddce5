"""The float32 rows of a large tenant's index in a file, read with pread: never in the worker's memory.

Once a tenant has its int8 copy (quantized.py), a query needs the float32 rows only for its few
candidates (exact scores). Keeping all of them in anonymous memory costs 4 bytes per dimension per
row in every worker; memory-mapping a file does not help (touching a few rows faults whole large
folios into RSS). Reading candidate rows with `os.preadv` copies them out of the page cache, which
is shared by the workers and reclaimable, into a small buffer.

Rows are addressed through a slot column, in the same row order as the TenantIndex (capacity growth,
move-last-into-hole). Slots below `base_rows` are rows of a read-only base file (a checkpoint's
emb.npy, shared by every worker that loaded it); the others live in a private unlinked temporary
file. A removed row's private slot is reused by a later append, so the private file grows with the
live rows, not with the churn. numpy and the standard library only.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

READ_CHUNK = 8192  # rows read at a time by sequential readers (checkpoints, re-quantizing)


class RowStore:
    def __init__(self, dim: int, capacity: int, directory: str | Path | None = None) -> None:
        self.dim = dim
        self.row_bytes = dim * 4
        self.capacity = capacity
        # row -> slot (int32: 2^31 rows is far beyond a worker). None while every row r sits at slot
        # r, as after a build or a checkpoint load: 4 bytes a row saved until a row moves.
        self.slot: np.ndarray | None = None
        self.directory = directory
        self._base: tuple[int, int] | None = None  # (fd, offset of row 0) of the read-only base file
        self.base_rows = 0
        self._file = None  # the private file, created on the first append
        self._fresh = 0  # private slots ever used
        self._free: list[int] = []  # private slots of removed rows

    @classmethod
    def over_file(cls, path: str | Path, offset: int, n: int, dim: int,
                  directory: str | Path | None = None) -> RowStore:
        """Rows [0, n) are the n * dim float32 values at `offset` in `path` (never written)."""
        store = cls(dim, n, directory)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        if os.fstat(fd).st_size < offset + n * store.row_bytes:
            os.close(fd)
            raise ValueError(f"{path} is too short for {n} rows of dim {dim}")
        store._base = (fd, offset)
        store.base_rows = n
        return store

    def close(self) -> None:
        if self._base is not None:
            os.close(self._base[0])
            self._base = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def nbytes(self) -> int:
        """What the store holds in memory (the rows themselves are in the page cache)."""
        return (0 if self.slot is None else self.slot.nbytes) + 8 * len(self._free)

    def _slots(self) -> np.ndarray:
        """The row -> slot map, made explicit (the first time a row leaves its own slot)."""
        if self.slot is None:
            self.slot = np.arange(self.capacity, dtype=np.int32)
        return self.slot

    def grow(self, capacity: int, n: int) -> None:
        if self.slot is not None:
            new = np.zeros(capacity, dtype=np.int32)
            new[:n] = self.slot[:n]
            self.slot = new
        self.capacity = capacity

    # ----- writes -----
    def _private(self) -> int:
        if self._file is None:
            try:
                if self.directory is not None:
                    os.makedirs(self.directory, exist_ok=True)
                self._file = tempfile.TemporaryFile(dir=self.directory, prefix="memcloud-rows-")  # noqa: SIM115 (closed in close())
            except OSError:  # an unwritable data dir must not fail queries: the system's temp dir
                self._file = tempfile.TemporaryFile(prefix="memcloud-rows-")  # noqa: SIM115
        return self._file.fileno()

    def append(self, start: int, vectors: np.ndarray) -> None:
        """Rows [start, start + len(vectors)) get these vectors (float32, dim columns)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        m = len(vectors)
        if not m:
            return
        fd = self._private()
        reused = min(m, len(self._free))
        if self.slot is None and (reused or self.base_rows + self._fresh != start):
            self._slots()  # these rows will not sit at their own slots
        for i in range(reused):  # holes first, one row each
            slot = self._free.pop()
            self._write(fd, slot, vectors[i : i + 1])
            self.slot[start + i] = slot
        if m > reused:  # then fresh slots at the end of the file, in one write
            first = self._fresh
            self._write(fd, first, vectors[reused:])
            if self.slot is not None:
                self.slot[start + reused : start + m] = self.base_rows + first + np.arange(m - reused)
            self._fresh += m - reused

    def _write(self, fd: int, private_slot: int, rows: np.ndarray) -> None:
        data = memoryview(rows).cast("B")
        offset = private_slot * self.row_bytes
        while data:
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written

    def release(self, row: int) -> None:
        """Row `row` is gone: its private slot may be reused (base rows are never written)."""
        slot = row if self.slot is None else int(self.slot[row])
        if slot >= self.base_rows:
            self._free.append(slot - self.base_rows)

    def move(self, src: int, dst: int) -> None:
        slots = self._slots()
        slots[dst] = slots[src]

    # ----- reads -----
    def read(self, rows: np.ndarray) -> np.ndarray:
        """The float32 vectors of `rows`, in that order: one preadv per run of adjacent slots."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.dim), dtype=np.float32)
        if not rows.size:
            return out
        slots = rows if self.slot is None else self.slot[rows]
        order = np.argsort(slots, kind="stable")
        ordered = slots[order]
        buffer = np.empty_like(out)
        # Runs: adjacent slots in the same file.
        breaks = np.flatnonzero((np.diff(ordered) != 1) | (ordered[1:] == self.base_rows)) + 1
        starts = np.concatenate(([0], breaks)).tolist()
        stops = [*starts[1:], rows.size]
        view = memoryview(buffer).cast("B")
        rb = self.row_bytes
        for a, b in zip(starts, stops, strict=True):
            slot = int(ordered[a])
            if slot < self.base_rows:
                fd, offset = self._base[0], self._base[1] + slot * rb
            else:
                fd, offset = self._file.fileno(), (slot - self.base_rows) * rb
            self._read_into(fd, view[a * rb : b * rb], offset)
        out[order] = buffer
        return out

    @staticmethod
    def _read_into(fd: int, target: memoryview, offset: int) -> None:
        while target:
            got = os.preadv(fd, [target], offset)
            if got <= 0:
                raise OSError(f"row file ended early at offset {offset}")
            target, offset = target[got:], offset + got

    def read_range(self, start: int, stop: int) -> np.ndarray:
        return self.read(np.arange(start, stop))
