"""Per-thread arrays that a large search reuses from one query to the next instead of allocating.

Why: gunicorn workers fix glibc's mmap threshold at 128 KB (memcloud/gunicorn.conf.py), so that a
build's large temporaries go back to the system. The price is that every fresh array above it is a
new mapping, faulted in page by page as it is first written: a float32 product over 100k rows took
223 µs into a new array and 53 µs into a reused one. A query at 100k rows made three such arrays.
Each buffer stays as large as the largest scope its thread has searched: the int8 search's four
take a little over 9 bytes a row (its k-th best comes from a sixteenth of the scores) and a tag
filter's one 4 or 8, against about 460 that an indexed row of dim 384 takes.
"""

from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def buffer(slot: str, size: int, dtype: type | np.dtype) -> np.ndarray:
    """A 1-D array of `size` items of `dtype`, its contents undefined, valid until this thread asks
    for the same slot and dtype again."""
    buffers: dict[tuple[str, np.dtype], np.ndarray] = _local.__dict__.setdefault("buffers", {})
    key = (slot, np.dtype(dtype))
    held = buffers.get(key)
    if held is None or held.size < size:  # an eighth more: a growing tenant is not reallocated every query
        held = buffers[key] = np.empty(size + size // 8, dtype=key[1])
    return held[:size]
