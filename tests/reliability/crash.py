"""Fault figures at scale on loopback (`make crash`; not part of `make test`), bounded in time:

  crash-loop    >= 200 SIGKILLs (workers, and now and then the gunicorn master with its workers, as a
                pod crash) at random moments under concurrent batch writes and queries: every
                acknowledged batch complete, no batch in part, count = acknowledged + unacknowledged
                but committed.
  replica-kill  2 replicas x 2 workers behind nginx; the replica a key is routed to is SIGKILLed
                while SDK clients write through nginx: no acknowledged write lost, no error for a
                call started after the kill (in-flight calls at the kill are counted apart).
  rate-limit    64 concurrent clients on one key, spread over 2 replicas x 2 workers, against the
                tenant's limit: exactly the limit admitted, with the database counter and with Redis.

    python -m tests.reliability.crash [--only NAME] [--kills 200] [--max-minutes 12]

Writes build/reliability/<check>.json (docs/reliability.md quotes them). PostgreSQL (DATABASE_URL)
is needed for the replicas; nginx for replica-kill; Redis (REDIS_URL_FOR_TESTS) for its rate-limit run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np

from tests.support.database import drop_database, fresh_database_env, is_postgres
from tests.support.ingress import NginxIngress, nginx_binary
from tests.support.server import LiveServer
from tests.support.tenants import auth

from .support import BatchLedger, record, write_batches

DIM = 8


def batch(label: str, size: int, rng: np.random.Generator) -> list[dict]:
    return [{"id": str(uuid.uuid4()), "task_id": f"{label}-{i:03d}", "state_embedding": rng.normal(size=DIM).round(4)
             .tolist(), "reward": 1.0} for i in range(size)]


def stored_per_label(url: str, key: str) -> tuple[collections.Counter, int]:
    """Every episode the tenant holds, counted by batch label (its task_id without the index)."""
    per_label: collections.Counter = collections.Counter()
    cursor = None
    with httpx.Client(base_url=url, headers=auth(key), timeout=120) as client:
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/episodes", params=params)
            page.raise_for_status()
            body = page.json()
            for e in body["episodes"]:
                per_label[e["task_id"].rsplit("-", 1)[0]] += 1
            cursor = body["next_cursor"]
            if not cursor:
                break
        total = client.get("/v1/stats").json()["episodes"]
    return per_label, total


def verify_batches(acked: list[str], unacked: list[str], per_label: collections.Counter, size: int) -> dict:
    lost = sum(per_label[label] != size for label in acked)
    partial = sum(per_label[label] not in (0, size) for label in set(acked) | set(unacked))
    committed_unacked = sum(per_label[label] == size for label in unacked)
    stray = sum(1 for label in per_label if label not in set(acked) | set(unacked))
    return {"batches_acknowledged": len(acked), "batches_unacknowledged": len(unacked),
            "unacknowledged_found_complete": committed_unacked, "acknowledged_batches_lost": lost,
            "partial_batches": partial, "stray_labels": stray}


@contextmanager
def fresh_server_env(label: str) -> Iterator[dict[str, str]]:
    env = fresh_database_env(label)
    try:
        LiveServer(env=env).migrate()
        yield env
    finally:
        with contextlib.suppress(Exception):
            drop_database(env)


# ----- crash loop -----
def crash_loop(kills: int, max_minutes: float, workers: int = 3, writers: int = 4, queriers: int = 2,
               size: int = 50) -> dict:
    """One function for the whole run: the load threads, the killer and the check share its state."""
    with fresh_server_env("crash") as env:
        server = LiveServer(workers=workers, env=env)
        key = server.create_tenant(f"crash-{uuid.uuid4().hex[:8]}", "--dim", str(DIM))
        server.start()
        ledger = BatchLedger()
        statuses: collections.Counter = collections.Counter()  # the queries'
        bad_answers: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def querier(n: int) -> None:
            rng = np.random.default_rng(1000 + n)
            with httpx.Client(base_url=server.url, headers=auth(key), timeout=60,
                              limits=httpx.Limits(max_keepalive_connections=0)) as client:
                while not stop.is_set():
                    try:
                        response = client.post("/v1/query", json={"query_embedding": rng.normal(size=DIM).tolist(),
                                                                  "top_k": 10})
                    except httpx.TransportError as exc:
                        with lock:
                            statuses[f"query {type(exc).__name__}"] += 1
                        time.sleep(0.05)
                        continue
                    with lock:
                        statuses[f"query {response.status_code}"] += 1
                        if response.status_code == 200:
                            ids = [hit["id"] for hit in response.json()["episodes"]]
                            if len(ids) != len(set(ids)):
                                bad_answers.append("duplicate ids in a query answer")

        def body(label: str, rng: np.random.Generator) -> dict:
            return {"episodes": batch(label, size, rng)}

        threads = [threading.Thread(target=write_batches, args=(server.url, key, n, stop, ledger, body, "w"))
                   for n in range(writers)]
        threads += [threading.Thread(target=querier, args=(n,)) for n in range(queriers)]
        for thread in threads:
            thread.start()
        killed = {"worker": 0, "master": 0, "workers_with_master": 0}
        rnd = random.Random(7)
        started = time.monotonic()
        deadline = started + max_minutes * 60
        try:
            try:
                while sum(killed.values()) < kills and time.monotonic() < deadline:
                    time.sleep(rnd.uniform(0.15, 1.0))
                    pids = server.worker_pids()
                    if rnd.random() < 0.08:  # the master and its workers at once: a pod crash
                        server.kill_all()
                        killed["master"] += 1
                        killed["workers_with_master"] += len(pids)
                        server.start(timeout=60)
                    elif pids:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(rnd.choice(pids), signal.SIGKILL)
                            killed["worker"] += 1
                time.sleep(1.0)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(timeout=120)
            elapsed = time.monotonic() - started
            if server.process is None or server.process.poll() is not None:
                server.start(timeout=60)
            per_label, total = stored_per_label(server.url, key)
        finally:
            server.stop()
    acked, unacked = ledger.acked, ledger.unacked
    statuses.update({f"batch {outcome}": n for outcome, n in ledger.statuses.items()})
    figures = verify_batches(acked, unacked, per_label, size)
    server_errors = sum(v for k, v in statuses.items() if k.split()[-1].isdigit() and int(k.split()[-1]) >= 500)
    return {**figures, "sigkills": sum(killed.values()), "killed": killed, "seconds": round(elapsed, 1),
            "batch_size": size, "episodes": total, "expected_episodes": size * (len(acked)
                                                                                + figures["unacknowledged_found_complete"]),
            "statuses": dict(statuses), "server_errors": server_errors, "bad_answers": len(bad_answers),
            "requests": sum(statuses.values()), "workers": workers, "writers": writers, "queriers": queriers,
            "command": "make crash (python -m tests.reliability.crash --only crash-loop)"}


# ----- two replicas behind nginx -----
@contextmanager
def cluster(env: dict[str, str], extra: dict[str, str] | None = None) -> Iterator[tuple[LiveServer, LiveServer,
                                                                                          NginxIngress]]:
    replica_env = {**env, "AGENT_MEM_RATE_WINDOW_SECS": "3600", **(extra or {})}
    a, b = LiveServer(workers=2, env=replica_env), LiveServer(workers=2, env=replica_env)
    with a, b, NginxIngress([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]) as ingress:
        yield a, b, ingress


def key_routed_to(a: LiveServer, ingress: NginxIngress, *opts: str) -> str:
    for _ in range(20):
        key = a.create_tenant(f"rk-{uuid.uuid4().hex[:8]}", "--dim", str(DIM), *opts)
        r = httpx.get(f"{ingress.url}/v1/stats", headers=auth(key), timeout=30)
        if r.headers.get("X-Upstream") == f"127.0.0.1:{a.port}":
            return key
    raise RuntimeError("no key was routed to the first replica")


def replica_kill(writers: int = 4, size: int = 20, before_s: float = 5.0, after_s: float = 15.0) -> dict:
    """SDK clients (memcloud_client, its retries on) write and query through nginx; the replica the
    key is routed to is SIGKILLed (master and workers) mid-write."""
    from memcloud_client import MemcloudClient, MemcloudError

    with fresh_server_env("replica") as env, cluster(env) as (a, b, ingress):
        key = key_routed_to(a, ingress)
        outcomes: list[tuple[float, float, str, str, str]] = []  # (start, end, kind, label, result)
        lock = threading.Lock()
        stop = threading.Event()

        def writer(n: int) -> None:
            rng = np.random.default_rng(n)
            with MemcloudClient(base_url=ingress.url, api_key=key, timeout=30, max_retries=5) as client:
                i = 0
                while not stop.is_set():
                    label = f"r{n}x{i:05d}"
                    i += 1
                    began = time.monotonic()
                    try:
                        client.store_batch(batch(label, size, rng), batch_size=size)
                        result = "ok"
                    except MemcloudError as exc:
                        result = f"{type(exc).__name__} {getattr(exc, 'status', '')}".strip()
                    with lock:
                        outcomes.append((began, time.monotonic(), "batch", label, result))
                    try:
                        began = time.monotonic()
                        client.query(rng.normal(size=DIM).tolist(), top_k=5)
                        result = "ok"
                    except MemcloudError as exc:
                        result = f"{type(exc).__name__} {getattr(exc, 'status', '')}".strip()
                    with lock:
                        outcomes.append((began, time.monotonic(), "query", "", result))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(before_s)
            killed_at = time.monotonic()
            a.kill_all()
            time.sleep(after_s)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
        per_label, total = stored_per_label(b.url, key)
    acked = [label for _, _, kind, label, result in outcomes if kind == "batch" and result == "ok"]
    unacked = [label for _, _, kind, label, result in outcomes if kind == "batch" and result != "ok"]
    figures = verify_batches(acked, unacked, per_label, size)
    in_flight = [o for o in outcomes if o[0] < killed_at <= o[1]]
    after = [o for o in outcomes if o[0] >= killed_at]
    errors_after = collections.Counter(o[4] for o in after if o[4] != "ok")
    errors_in_flight = collections.Counter(o[4] for o in in_flight if o[4] != "ok")
    return {**figures, "calls": len(outcomes), "requests": len(outcomes), "calls_before_kill": sum(
        o[1] < killed_at for o in outcomes), "calls_in_flight_at_kill": len(in_flight),
        "errors_in_flight": dict(errors_in_flight), "calls_started_after_kill": len(after),
        "errors_after_kill": dict(errors_after), "server_errors": sum(errors_after.values()),
        "episodes": total, "expected_episodes": size * (len(acked) + figures["unacknowledged_found_complete"]),
        "command": "make crash (python -m tests.reliability.crash --only replica-kill)"}


# ----- 64 clients on one key against the rate limit -----
def rate_limit_burst(backend: str, clients: int = 64, per_client: int = 4, limit: int = 100) -> dict:
    extra = {"REDIS_URL": os.environ.get("REDIS_URL_FOR_TESTS", "redis://127.0.0.1:6379/15")} if backend == "redis" else {}
    with fresh_server_env(f"rl{backend[:2]}") as env, cluster(env, extra) as (a, b, _ingress):
        key = a.create_tenant(f"rl-{uuid.uuid4().hex[:8]}", "--dim", str(DIM), "--rate-limit", str(limit))
        first = httpx.get(f"{a.url}/v1/stats", headers=auth(key), timeout=30)
        assert first.status_code == 200 and first.headers["X-RateLimit-Limit"] == str(limit), first.text
        used = 1
        if int(first.headers["X-RateLimit-Reset"]) < 120:  # too close to the window's end: use the next
            time.sleep(int(first.headers["X-RateLimit-Reset"]) + 1)
            used = 0
        barrier = threading.Barrier(clients)
        answers: list[tuple[str, int]] = []
        lock = threading.Lock()

        def client(n: int) -> None:
            server = (a, b)[n % 2]
            with httpx.Client(base_url=server.url, headers=auth(key), timeout=60,
                              limits=httpx.Limits(max_keepalive_connections=0)) as c:
                barrier.wait()
                for _ in range(per_client):
                    r = c.get("/v1/stats")
                    with lock:
                        answers.append((server.url, r.status_code))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    statuses = collections.Counter(status for _, status in answers)
    admitted = statuses[200] + used
    by_replica = {url.rsplit(":", 1)[1]: collections.Counter(s for u, s in answers if u == url)[200]
                  for url in {u for u, _ in answers}}
    return {"backend": backend, "clients": clients, "requests": len(answers) + 1, "limit": limit,
            "admitted": admitted, "refused_429": statuses[429], "statuses": {str(k): v for k, v in statuses.items()},
            "admitted_by_replica": by_replica, "server_errors": sum(v for k, v in statuses.items() if k >= 500),
            "command": f"make crash (python -m tests.reliability.crash --only rate-limit-{backend})"}


CHECKS = ("crash-loop", "rate-limit-database", "rate-limit-redis", "replica-kill")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=CHECKS, action="append")
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--max-minutes", type=float, default=12, help="bound of the crash loop")
    args = parser.parse_args(argv)
    failed = []
    for check in args.only or CHECKS:
        if check != "crash-loop" and not is_postgres():
            print(f"{check}: skipped, the replicas need PostgreSQL (DATABASE_URL=postgres://...)")
            continue
        if check == "replica-kill" and nginx_binary() is None:
            print(f"{check}: skipped, nginx is not installed")
            continue
        if check == "crash-loop":
            figures = crash_loop(args.kills, args.max_minutes)
            ok = (figures["acknowledged_batches_lost"] == 0 and figures["partial_batches"] == 0
                  and figures["episodes"] == figures["expected_episodes"] and figures["sigkills"] >= args.kills
                  and figures["server_errors"] == 0 and figures["bad_answers"] == 0)
            name = "crash_loop"
        elif check == "replica-kill":
            figures = replica_kill()
            ok = (figures["acknowledged_batches_lost"] == 0 and figures["partial_batches"] == 0
                  and not figures["errors_after_kill"] and figures["episodes"] == figures["expected_episodes"])
            name = "replica_kill"
        else:
            backend = check.removeprefix("rate-limit-")
            figures = rate_limit_burst(backend)
            ok = figures["admitted"] == figures["limit"] and figures["server_errors"] == 0
            name = f"rate_limit_burst_{backend}"
        record(name, **figures)
        print(f"{check}: {'ok' if ok else 'FAILED'} {figures}")
        if not ok:
            failed.append(check)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
