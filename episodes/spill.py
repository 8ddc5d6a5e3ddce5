"""A float32 matrix kept in an unlinked temporary file mapped into memory, instead of anonymous memory.

Once a tenant has its int8 copy, the float32 rows are read only for the few candidates of a query
(and for very selective filters). Backed by a file, those rows live in the page cache: resident in
the worker only while recently touched, dropped from it by `release()`, and evictable by the kernel
(after write-back) instead of pinned, so a worker's resident memory follows the int8 copy.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile

import numpy as np

CHUNK = 64 << 20


class SpilledMatrix:
    def __init__(self, source: np.ndarray, rows: int, capacity: int, directory: str | None = None) -> None:
        self.dim = source.shape[1]
        self.capacity = capacity
        self.directory = directory
        self._fd, path = tempfile.mkstemp(prefix="memcloud-rows-", dir=directory)
        os.unlink(path)  # nothing to clean up after a crash: the file lives while it is mapped
        size = max(capacity * self.dim * 4, mmap.PAGESIZE)
        os.ftruncate(self._fd, size)
        self._write_rows(source[:rows])
        self._map = mmap.mmap(self._fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.array = np.ndarray((capacity, self.dim), dtype=np.float32, buffer=self._map)

    def _write_rows(self, rows: np.ndarray) -> None:
        """Through the file descriptor, not the mapping, so copying does not make the rows resident."""
        data = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1).view(np.uint8).data
        for start in range(0, len(data), CHUNK):
            os.pwrite(self._fd, data[start : start + CHUNK], start)

    def grown(self, rows: int, capacity: int) -> SpilledMatrix:
        """A larger copy holding the first `rows` rows; this one is closed."""
        bigger = SpilledMatrix(np.empty((0, self.dim), np.float32), 0, capacity, self.directory)
        remaining, offset = rows * self.dim * 4, 0
        while remaining:
            chunk = os.pread(self._fd, min(CHUNK, remaining), offset)
            os.pwrite(bigger._fd, chunk, offset)
            offset += len(chunk)
            remaining -= len(chunk)
        self.close()
        return bigger

    def release(self) -> None:
        """Drop this process's resident copies of the pages (the data stays in the file)."""
        self._map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        if self._fd < 0:
            return
        self.array = None
        with contextlib.suppress(BufferError):  # a view is still alive somewhere: the GC unmaps it later
            self._map.close()
        os.close(self._fd)
        self._fd = -1

    def __del__(self) -> None:  # an evicted index must not leak its file descriptor
        with contextlib.suppress(Exception):
            self.close()
