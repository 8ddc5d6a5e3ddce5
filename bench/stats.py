"""Small numeric helpers shared by the benchmark modules."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np


def summarize(seconds: list[float]) -> dict[str, float]:
    """p50/p99/mean in milliseconds of a list of durations in seconds."""
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    if a.size == 0:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan"), "count": 0}
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
        "mean_ms": round(float(a.mean()), 4),
        "count": int(a.size),
    }


def time_calls(fn: Callable[[int], object], count: int, *, warmup: int = 3, max_seconds: float = 2.0,
               min_count: int = 5) -> list[float]:
    """Run fn(i) for i in range(count) after a few warm-up calls, stopping early once max_seconds
    have passed (after at least min_count calls); durations in seconds."""
    for i in range(min(warmup, count)):
        fn(i)
    out: list[float] = []
    began = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
        if len(out) >= min_count and time.perf_counter() - began > max_seconds:
            break
    return out


def query_cell(send: Callable[[int], Sequence[str]], exact: list[list[str]], count: int) -> dict:
    """One query cell at concurrency 1: recall of send(i)'s ids against the exact ids of query i, the
    mean number returned, and the latency of `count` calls."""
    found = [send(i) for i in range(len(exact))]
    return {"concurrency": 1, "recall": recall_at_k(found, exact),
            "returned_mean": round(float(np.mean([len(f) for f in found])), 3), **summarize(time_calls(send, count))}


def recall_at_k(found: list[list[str]], exact: list[list[str]]) -> float:
    """Mean over queries of |found ∩ exact| / |exact| (1.0 when exact is empty and found is too)."""
    values = []
    for f, e in zip(found, exact, strict=True):
        values.append(len(set(f) & set(e)) / len(e) if e else float(not f))
    return round(float(np.mean(values)), 4) if values else float("nan")
