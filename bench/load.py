"""Closed-loop load generation: C threads, each with its own connection, bounded in time and count."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bench.stats import summarize

# A factory gives each thread its own request function (own keep-alive connection); the
# function takes the request number and raises on any failed request.
RequestFactory = Callable[[], Callable[[int], object]]


def closed_loop(factory: RequestFactory, *, concurrency: int, seconds: float, max_requests: int) -> dict:
    """Run until `seconds` pass or `max_requests` are sent in all; QPS and latency summary."""
    lock = threading.Lock()
    counter = iter(range(max_requests))
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[BaseException] = []
    start_gate = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker(slot: int) -> None:
        try:
            send = factory()
            send(-1)  # warm the connection before the clock starts
        except BaseException as exc:  # reported below
            errors.append(exc)
            start_gate.wait()
            return
        start_gate.wait()
        mine = latencies[slot]
        while time.perf_counter() < deadline[0]:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t = time.perf_counter()
            try:
                send(i)
            except BaseException as exc:  # reported below
                errors.append(exc)
                return
            mine.append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in range(concurrency)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + 3600
    start_gate.wait()
    began = time.perf_counter()
    deadline[0] = began + seconds
    for t in threads:
        t.join(seconds + 60)
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]!r}")
    flat = [x for per in latencies for x in per]
    return {"qps": round(len(flat) / elapsed, 2), "concurrency": concurrency, **summarize(flat)}
