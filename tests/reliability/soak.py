"""Soak: mixed load at a fixed rate on loopback against a fresh gunicorn, reporting errors, p99 latency
per interval and the RSS of every worker over time (a leak shows as steady growth).

    python -m tests.reliability.soak --minutes 10 [--rate 40] [--workers 2] [--interval 30]

Latency is measured from each request's scheduled start, so a stalled server cannot hide its stall
by slowing the load down (no coordinated omission). Writes build/reliability/soak.json."""

from __future__ import annotations

import argparse
import collections
import queue
import random
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

from tests.support.database import drop_database, fresh_database_env
from tests.support.server import LiveServer
from tests.support.tenants import auth

from .support import record

DIM = 64
KEEP = 5000  # keep-newest prunes bound the tenant's size


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Load:
    """One kind of request per call, drawn from a fixed mix."""

    MIX = (("store", 40), ("batch", 5), ("query", 40), ("get", 8), ("stats", 5), ("prune", 2))

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ids: collections.deque[str] = collections.deque(maxlen=1000)
        self.lock = threading.Lock()
        kinds, weights = zip(*self.MIX, strict=True)
        self.kinds, self.weights = kinds, weights

    def vector(self) -> list[float]:
        return [round(self.rng.uniform(-1, 1), 4) for _ in range(DIM)]

    def episode(self) -> dict:
        return {"task_id": f"soak_{self.rng.randrange(50)}", "state_embedding": self.vector(),
                "reward": round(self.rng.uniform(-1, 1), 3), "tags": self.rng.sample(["a", "b", "c", "d"], 2),
                "metadata": {"step": self.rng.randrange(1000)}}

    def next_request(self) -> tuple[str, str, str, dict | None]:
        with self.lock:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            if kind == "store":
                return kind, "POST", "/v1/episodes", self.episode()
            if kind == "batch":
                return kind, "POST", "/v1/episodes/batch", {"episodes": [self.episode() for _ in range(20)]}
            if kind == "query":
                return kind, "POST", "/v1/query", {"query_embedding": self.vector(), "top_k": 10,
                                                   **self.rng.choice([{}, {"tags_any": ["a"]}, {"min_reward": 0.5}])}
            if kind == "get" and self.ids:
                return kind, "GET", f"/v1/episodes/{self.rng.choice(self.ids)}", None
            if kind == "prune":
                return kind, "POST", "/v1/prune/keep-newest", {"n": KEEP}
            return "stats", "GET", "/v1/stats", None

    def learn(self, response: httpx.Response) -> None:
        if response.status_code == 201 and "id" in response.json():
            with self.lock:
                self.ids.append(response.json()["id"])


def run(minutes: float, rate: float, workers: int, interval: float, threads: int) -> dict:
    env = fresh_database_env("soak")
    server = LiveServer(workers=workers, env=env)
    try:
        server.migrate()
        key = server.create_tenant(f"soak-{uuid.uuid4().hex[:8]}", "--dim", str(DIM))
        server.start()
        return drive(server, key, minutes, rate, interval, threads)
    finally:
        server.stop()
        drop_database(env)


def drive(server: LiveServer, key: str, minutes: float, rate: float, interval: float, threads: int) -> dict:
    load = Load(seed=1)
    schedule: queue.Queue[float | None] = queue.Queue()
    results: list[tuple[float, str, int, float]] = []  # (scheduled offset s, kind, status, latency ms)
    lock = threading.Lock()
    begin = time.monotonic() + 1.0

    def sender() -> None:
        with httpx.Client(base_url=server.url, headers=auth(key), timeout=60) as client:
            while (due := schedule.get()) is not None:
                time.sleep(max(0.0, due - time.monotonic()))
                kind, method, path, body = load.next_request()
                try:
                    response = client.request(method, path, json=body)
                    status = response.status_code
                    load.learn(response)
                except httpx.HTTPError:
                    status = 0
                latency = (time.monotonic() - due) * 1000
                with lock:
                    results.append((due - begin, kind, status, latency))

    pool = [threading.Thread(target=sender, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    total = int(minutes * 60 * rate)
    rss: list[dict] = []
    next_sample = begin
    for i in range(total):
        due = begin + i / rate
        while next_sample <= due:  # sample worker memory on the same clock
            time.sleep(max(0.0, next_sample - time.monotonic()))
            rss.append({"t": round(next_sample - begin, 1),
                        "rss_kib": {str(pid): rss_kib(pid) for pid in server.worker_pids()}})
            next_sample += interval
        schedule.put(due)
        while schedule.qsize() > threads * 4:  # keep the queue short: senders take the next due time
            time.sleep(0.005)
    for _ in pool:
        schedule.put(None)
    for thread in pool:
        thread.join(timeout=120)
    rss.append({"t": round(time.monotonic() - begin, 1),
                "rss_kib": {str(pid): rss_kib(pid) for pid in server.worker_pids()}})
    return summarize(results, rss, minutes, rate, interval)


def summarize(results, rss, minutes: float, rate: float, interval: float) -> dict:
    statuses = collections.Counter(str(status) for _, _, status, _ in results)
    windows = []
    for start in range(0, int(minutes * 60), int(interval)):
        inside = [r for r in results if start <= r[0] < start + interval]
        lat = [r[3] for r in inside]
        windows.append({"from_s": start, "requests": len(inside), "p50_ms": round(percentile(lat, 0.5), 2),
                        "p99_ms": round(percentile(lat, 0.99), 2),
                        "errors": sum(1 for r in inside if r[2] == 0 or r[2] >= 500)})
    # Baseline after the first window: imports and the first index build are warm-up, not a leak.
    first, last = rss[1 if len(rss) > 2 else 0]["rss_kib"], rss[-1]["rss_kib"]
    growth = {pid: {"start_kib": first.get(pid), "end_kib": kib,
                    "growth_kib": None if first.get(pid) is None or kib is None else kib - first[pid]}
              for pid, kib in last.items()}
    by_kind = {kind: round(percentile([r[3] for r in results if r[1] == kind], 0.99), 2)
               for kind in sorted({r[1] for r in results})}
    return {"minutes": minutes, "rate_per_s": rate, "requests": len(results), "statuses": dict(statuses),
            "server_errors": sum(v for k, v in statuses.items() if k.startswith("5")),
            "transport_errors": statuses.get("0", 0), "p99_ms_by_kind": by_kind, "windows": windows,
            "rss_per_worker": growth, "rss_samples": rss,
            "command": f"python -m tests.reliability.soak --minutes {minutes:g} --rate {rate:g}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=40, help="requests per second, fixed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=30, help="seconds per report window")
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    report = run(args.minutes, args.rate, args.workers, args.interval, args.threads)
    record("soak", **report)
    print(f"{report['requests']} requests at {args.rate:g}/s: statuses {report['statuses']}")
    print("window   requests  p50 ms   p99 ms  errors")
    for w in report["windows"]:
        print(f"{w['from_s']:>5}s {w['requests']:>10} {w['p50_ms']:>7} {w['p99_ms']:>8} {w['errors']:>7}")
    print("p99 ms by kind:", report["p99_ms_by_kind"])
    for pid, g in report["rss_per_worker"].items():
        growth = "n/a" if g["growth_kib"] is None else f"{g['growth_kib']:+} KiB"
        print(f"worker {pid}: RSS {g['start_kib']} -> {g['end_kib']} KiB ({growth}, after the first window)")
    return 1 if report["server_errors"] or report["transport_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
