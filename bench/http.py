"""Memcloud end to end: gunicorn workers on the deployment's database, driven over loopback HTTP."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import numpy as np
import orjson

from bench.data import FILTERS, Dataset, make_dataset, slice_dataset
from bench.deploy import Deployment
from bench.load import closed_loop
from bench.procs import rss_kib
from bench.stats import recall_at_k, summarize

NUMPY = orjson.OPT_SERIALIZE_NUMPY
CATCHUP_REPEATS = 5


class Api:
    """One keep-alive connection (gunicorn's sync workers close it after each answer; it reopens)."""

    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def post(self, path: str, body: bytes, expect: tuple[int, ...] = (200, 201), key: str | None = None) -> bytes:
        headers = self.headers if key is None else {**self.headers, "Authorization": f"Bearer {key}"}
        self.conn.request("POST", path, body, headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status not in expect:
            raise RuntimeError(f"POST {path} answered {resp.status}: {data[:300]!r}")
        return data

    def timed_post(self, path: str, body: bytes, key: str | None = None) -> float:
        """Seconds one POST took (its body encoded before the clock starts)."""
        began = time.perf_counter()
        self.post(path, body, key=key)
        return time.perf_counter() - began

    def status(self, method: str, path: str, body: bytes | None = None) -> int:
        self.conn.request(method, path, body, self.headers)
        resp = self.conn.getresponse()
        resp.read()
        return resp.status


def query_body(q: np.ndarray, k: int, flt: str) -> bytes:
    return orjson.dumps({"query_embedding": q, "top_k": k, **FILTERS[flt]}, option=NUMPY)


def batches(ds: Dataset, size: int) -> Iterator[bytes]:
    for start in range(0, ds.n, size):
        yield orjson.dumps({"episodes": [ds.episode(i) for i in range(start, min(ds.n, start + size))]},
                           option=NUMPY)


def store_batches(api: Api, ds: Dataset, size: int, max_seconds: float = float("inf")) -> dict:
    """Store ds in batches of `size` (bodies encoded outside the clock) until done or max_seconds of
    request time have passed (at least one batch); episodes/s over request time."""
    spent: list[float] = []
    stored = 0
    for body in batches(ds, size):
        spent.append(api.timed_post("/v1/episodes/batch", body))
        stored = min(ds.n, stored + size)
        if sum(spent) >= max_seconds:
            break
    return {"batch": size, "episodes": stored, "episodes_per_s": round(stored / sum(spent), 1), **summarize(spent)}


def store_singles(api: Api, ds: Dataset) -> dict:
    bodies = [orjson.dumps(ds.episode(i), option=NUMPY) for i in range(ds.n)]
    spent = [api.timed_post("/v1/episodes", body) for body in bodies]
    return {"batch": 1, "episodes": ds.n, "episodes_per_s": round(ds.n / sum(spent), 1), **summarize(spent)}


def found_ids(data: bytes) -> list[str]:
    return [e["id"] for e in orjson.loads(data)["episodes"]]


def sender(url: str, key: str, bodies: list[bytes]) -> Callable[[int], object]:
    api = Api(url, key)
    return lambda i: api.post("/v1/query", bodies[i % len(bodies)])


def bench_queries(url: str, key: str, ds: Dataset, queries: np.ndarray, *, top_ks: tuple[int, ...],
                  concurrencies: tuple[int, ...], seconds: float, max_requests: int,
                  truth: dict[tuple[int, str], list[list[str]]]) -> list[dict]:
    out = []
    api = Api(url, key)
    for flt in FILTERS:
        for k in top_ks:
            bodies = [query_body(q, k, flt) for q in queries]
            found = [found_ids(api.post("/v1/query", b)) for b in bodies[: len(truth[(k, flt)])]]
            out.append({"system": "http", "op": "recall", "n": ds.n, "top_k": k, "filter": flt,
                        "recall": recall_at_k(found, truth[(k, flt)])})
            for c in concurrencies:
                load = closed_loop(lambda b=bodies: sender(url, key, b), concurrency=c, seconds=seconds,
                                   max_requests=max_requests)
                out.append({"system": "http", "op": "query_load", "n": ds.n, "top_k": k, "filter": flt, **load})
    return out


def warm(url: str, key: str, body: bytes, workers: int) -> float:
    """Query until every worker has built its index; returns the slowest (first-build) latency.

    Rounds of `workers + 1` concurrent queries: while one worker is busy another must accept, so
    every worker gets some (one client alone may be served by the same worker every time)."""
    worst = [0.0]
    lock = threading.Lock()

    def client() -> None:
        api = Api(url, key)
        for _ in range(4):
            took = api.timed_post("/v1/query", body)
            with lock:
                worst[0] = max(worst[0], took)

    for _ in range(3):
        threads = [threading.Thread(target=client) for _ in range(workers + 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return worst[0]


def rss_mib(pids: list[int]) -> list[float]:
    return [round(rss_kib(p) / 1024, 1) for p in pids]


def bench_http(dep: Deployment, ds: Dataset, queries: np.ndarray, *, top_ks: tuple[int, ...],
               concurrencies: tuple[int, ...], seconds: float, max_requests: int, workers: int,
               store_count: int, store_seconds: float, catchup_sizes: tuple[int, ...],
               truth: dict[tuple[int, str], list[list[str]]]) -> list[dict]:
    n = ds.n
    raw_mib = n * ds.dim * 4 / 2**20
    side_slug = f"side-{n}"
    side_key = dep.create_tenant(side_slug, ds.dim)
    main_key = dep.create_tenant(f"main-{n}", ds.dim)
    writer = dep.server(workers)
    api = Api(writer.url, main_key)
    # The HTTP store rate is measured on as many batches as fit in store_seconds; the rest of the
    # tenant is filled through the service's write path directly, so large N stays affordable.
    stored = store_batches(api, ds, 1000, store_seconds)
    out: list[dict] = [{"system": "http", "op": "store", "n": n, **stored}]
    t = time.perf_counter()
    dep.preload(f"main-{n}", ds, stored["episodes"], n)
    out.append({"system": "service", "op": "preload", "n": n, "episodes": n - stored["episodes"],
                "seconds": round(time.perf_counter() - t, 1)})
    probe = query_body(queries[0], 5, "none")
    out.append({"system": "http", "op": "first_queries", "n": n, "workers": workers,
                "slowest_ms": round(warm(writer.url, main_key, probe, workers) * 1e3, 2)})
    out += bench_queries(writer.url, main_key, ds, queries, top_ks=top_ks, concurrencies=concurrencies,
                         seconds=seconds, max_requests=max_requests, truth=truth)

    # Writes into a small tenant of their own, so the main tenant stays at exactly n episodes.
    extra = make_dataset(store_count * 11, seed=1000 + n)
    side = Api(writer.url, side_key)
    out.append({"system": "http", "op": "store", "n": n, **store_singles(side, slice_dataset(extra, 0, store_count))})
    out.append({"system": "http", "op": "store", "n": n,
                **store_batches(side, slice_dataset(extra, store_count, 11 * store_count), 100, store_seconds)})

    # A one-worker server that has never seen the main tenant: cold start, memory, then catch-up.
    reader = dep.server(1)
    (pid,) = reader.worker_pids()
    warm(reader.url, side_key, probe, 1)  # imports and the side tenant: everything but the main index
    before = rss_kib(pid)
    cold = Api(reader.url, main_key).timed_post("/v1/query", probe)
    out.append({"system": "http", "op": "cold_start", "n": n, "checkpoint": False, "first_ms": round(cold * 1e3, 2)})
    read_api = Api(reader.url, main_key)
    steady = [read_api.timed_post("/v1/query", probe) for _ in range(20)]
    after = rss_kib(pid)
    delta = (after - before) / 1024
    out.append({"system": "http", "op": "memory", "n": n, "raw_matrix_mib": round(raw_mib, 1),
                "worker_rss_before_mib": round(before / 1024, 1), "worker_rss_after_mib": round(after / 1024, 1),
                "rss_delta_mib": round(delta, 1), "ratio_to_raw": round(delta / raw_mib, 3),
                "delta_per_100k_mib": round(delta * 100_000 / n, 1),
                "writer_worker_rss_mib": rss_mib(writer.worker_pids())})
    # Small changes are measured CATCHUP_REPEATS times (one sample is mostly noise on 2 shared cores):
    # the median of (first query after the store - median of the 5 queries after it). The control
    # row (stored 0) is the same after a pause with nothing stored.
    repeats = {m: CATCHUP_REPEATS if m <= 1000 else 1 for m in catchup_sizes}
    grow = make_dataset(sum(m * r for m, r in repeats.items()), seed=2000 + n)
    start = 0
    for m in (0, *catchup_sizes):
        firsts, extras, after = [], [], []
        for _ in range(repeats.get(m, CATCHUP_REPEATS)):
            if m == 0:
                time.sleep(0.05)  # about as long as the writer takes for a small store
            elif m <= 1000:
                store_batches(api, slice_dataset(grow, start, start + m), 1000)
            else:  # another process writing through the service: same commits, without HTTP's cost
                dep.preload(f"main-{n}", grow, start, start + m)
            start += m
            first = read_api.timed_post("/v1/query", probe)
            after_first = [read_api.timed_post("/v1/query", probe) for _ in range(5)]
            firsts.append(first)
            after += after_first
            extras.append(first - float(np.median(after_first)))
        out.append({"system": "http", "op": "catch_up", "n": n, "stored": m, "repeats": len(extras),
                    "first_ms": round(float(np.median(firsts)) * 1e3, 3),
                    "steady_p50_ms": summarize(steady + after)["p50_ms"],
                    "catch_up_ms": round(float(np.median(extras)) * 1e3, 3)})

    # Cold start from a checkpoint, where the service has the endpoint.
    admin = Api(writer.url, main_key)
    status = admin.status("POST", "/v1/checkpoint", b"{}")
    if status == 200:
        fresh = dep.server(1)
        warm(fresh.url, side_key, probe, 1)
        cold = Api(fresh.url, main_key).timed_post("/v1/query", probe)
        out.append({"system": "http", "op": "cold_start", "n": n + start, "checkpoint": True,
                    "first_ms": round(cold * 1e3, 2)})
        fresh.stop()
    else:
        out.append({"system": "http", "op": "cold_start", "n": n + start, "checkpoint": True,
                    "skipped": f"POST /v1/checkpoint answered {status}"})
    reader.stop()
    writer.stop()
    return out
