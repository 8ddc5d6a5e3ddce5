"""memindex/scratch.py: one reusable array per thread, slot and dtype."""

import threading

import numpy as np

from memindex import scratch


def test_a_slot_is_reused_and_grows_when_asked_for_more():
    first = scratch.buffer("test-a", 1000, np.float32)
    again = scratch.buffer("test-a", 800, np.float32)
    assert again.size == 800 and np.shares_memory(first, again)
    larger = scratch.buffer("test-a", 5000, np.float32)
    assert larger.size == 5000 and larger.dtype == np.float32 and not np.shares_memory(first, larger)
    assert not np.shares_memory(scratch.buffer("test-b", 1000, np.float32), larger)  # another slot
    assert not np.shares_memory(scratch.buffer("test-a", 1000, np.float64), larger)  # another dtype


def test_threads_get_their_own_buffers():
    mine = scratch.buffer("test-c", 1000, np.float32)
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(scratch.buffer("test-c", 1000, np.float32)))
    thread.start()
    thread.join()
    assert not np.shares_memory(mine, theirs[0])
