"""Faults under load on a real server: a worker SIGKILLed mid-batch, PostgreSQL restarted while
requests flow. Batches are all or nothing and nothing acknowledged is ever lost.

The PostgreSQL restart stops the machine's shared cluster for a few seconds, so it runs only with
MEMCLOUD_FAULT_TESTS=1 (CI sets it) and only on PostgreSQL."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.database import is_postgres
from tests.support.server import LiveServer
from tests.support.tenants import auth, unique_slug

from .support import BatchLedger, record, write_batches

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DIM = 32
BATCH = 400


def batch_body(label: str, rng: np.random.Generator) -> dict:
    return {"episodes": [{"id": str(uuid.uuid4()), "task_id": f"{label}-{i:04d}",
                          "state_embedding": rng.normal(size=DIM).round(4).tolist(), "reward": 1.0}
                         for i in range(BATCH)]}


def stored_with_prefix(client: httpx.Client, prefix: str) -> int:
    response = client.post("/v1/query", json={"query_embedding": [1.0] * DIM, "top_k": 1000,
                                              "task_id_prefix": prefix})
    assert response.status_code == 200, response.text
    return len(response.json()["episodes"])


@pytest.fixture
def fault_server(server_db_env) -> Iterator[tuple[LiveServer, str]]:
    server = LiveServer(workers=3, env=server_db_env)
    key = server.create_tenant(unique_slug("fault"), "--dim", str(DIM))
    with server:
        yield server, key


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_sigkill_of_a_worker_mid_batch(fault_server):
    server, key = fault_server
    ledger = BatchLedger()
    stop = threading.Event()
    threads = [threading.Thread(target=write_batches, args=(server.url, key, n, stop, ledger, batch_body, "kb-"))
               for n in range(4)]
    for thread in threads:
        thread.start()
    killed = []
    try:
        # Kill until two kills have cut a batch off mid-request (a kill can find a worker idle), at most 8.
        while len(killed) < 8 and (len(killed) < 3 or ledger.transport_errors() < 2):
            time.sleep(0.7)
            before = set(server.worker_pids())
            victim = sorted(before)[len(killed) % len(before)]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            assert wait_for(lambda before=before: len(set(server.worker_pids()) - before) >= 1
                            and len(server.worker_pids()) == server.workers, 30), "gunicorn did not replace the worker"
        time.sleep(0.7)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    acked, unacked, statuses = ledger.acked, ledger.unacked, ledger.statuses
    assert ledger.server_errors() == 0, statuses
    assert not set(killed) & set(server.worker_pids())
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=60) as client:
        lost = sum(stored_with_prefix(client, label + "-") != BATCH for label in acked)
        partial, unacked_present = 0, 0
        for label in unacked:
            n = stored_with_prefix(client, label + "-")
            partial += n not in (0, BATCH)
            unacked_present += n == BATCH
        total = client.get("/v1/stats").json()["episodes"]
    record("fault_worker_kill", batches_acknowledged=len(acked), batches_unacknowledged=len(unacked),
           unacknowledged_found_complete=unacked_present, partial_batches=partial, acknowledged_batches_lost=lost,
           workers_killed=len(killed), statuses=dict(statuses), episodes=total, server_errors=ledger.server_errors(),
           command="pytest tests/reliability/test_faults.py -k sigkill")
    assert len(acked) > 0 and ledger.transport_errors() > 0, statuses  # the kills did hit batches
    assert lost == 0, "an acknowledged batch is incomplete"
    assert partial == 0, "a batch was stored in part"
    assert total == BATCH * (len(acked) + unacked_present)


def postgres_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[0]


@pytest.mark.skipif(os.environ.get("MEMCLOUD_FAULT_TESTS") != "1" or not is_postgres()
                    or not Path("/etc/postgresql").is_dir(),
                    reason="restarts the machine's PostgreSQL: set MEMCLOUD_FAULT_TESTS=1 (on PostgreSQL)")
def test_postgres_restart_while_requests_flow(fault_server):
    server, key = fault_server
    acked: list[str] = []
    statuses: collections.Counter = collections.Counter()
    bad: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(n: int) -> None:
        rng = np.random.default_rng(100 + n)
        with httpx.Client(base_url=server.url, headers=auth(key), timeout=60,
                          limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while not stop.is_set():
                eid = str(uuid.uuid4())
                body = {"id": eid, "task_id": "pg", "state_embedding": rng.normal(size=DIM).tolist(), "reward": 0.0}
                try:
                    store = client.post("/v1/episodes", json=body)
                    query = client.post("/v1/query", json={"query_embedding": [1.0] * DIM})
                    ready = client.get("/ready")
                except httpx.TransportError as exc:
                    with lock:
                        bad.append(f"connection error: {exc!r}")
                    continue
                with lock:
                    for response in (store, query, ready):
                        statuses[response.status_code] += 1
                        if response.status_code not in (200, 201, 503):
                            bad.append(f"{response.request.url.path} {response.status_code} {response.text[:200]}")
                        elif response.status_code == 503:
                            if not response.headers.get("content-type", "").startswith("application/json"):
                                bad.append(f"503 not JSON: {response.text[:200]}")
                            elif "error" not in response.json():
                                bad.append(f"503 without error: {response.text[:200]}")
                    if store.status_code == 201:
                        acked.append(eid)
                time.sleep(0.02)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", postgres_version(), "main", "restart"],
                       check=True, capture_output=True, timeout=120)
        with lock:
            at_restart = sum(statuses.values())
        # Keep the load on until the service has answered well again for a while by itself.
        wait_for(lambda: sum(statuses.values()) > at_restart + 60, 60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=60) as client:
        assert wait_for(lambda: client.get("/ready").status_code == 200, 60), "never ready again"
        missing = [eid for eid in acked if client.get(f"/v1/episodes/{eid}").status_code != 200]
        after = client.post("/v1/episodes", json={"task_id": "after", "state_embedding": [1.0] * DIM, "reward": 1})
    record("fault_postgres_restart", requests=sum(statuses.values()), statuses={str(k): v for k, v in statuses.items()},
           answers_503=statuses[503], server_errors=sum(v for k, v in statuses.items() if k >= 500 and k != 503),
           bad_answers=len(bad), acknowledged_stores=len(acked), acknowledged_lost=len(missing),
           command="MEMCLOUD_FAULT_TESTS=1 pytest tests/reliability/test_faults.py -k postgres")
    assert not bad, bad[:10]
    assert not missing, f"{len(missing)} acknowledged stores lost"
    assert after.status_code == 201, after.text
    assert "gunicorn exited" not in server.log() and server.process.poll() is None


@pytest.mark.skipif(os.environ.get("MEMCLOUD_FAULT_TESTS") != "1" or not is_postgres()
                    or not Path("/etc/postgresql").is_dir(),
                    reason="restarts the machine's PostgreSQL: set MEMCLOUD_FAULT_TESTS=1 (on PostgreSQL)")
def test_it_answers_the_first_requests_after_a_postgres_restart(fault_server):
    """Every worker holds a connection the restart closed: the health check replaces it before the
    request's first statement, so no request sent once PostgreSQL is back gets a 503."""
    server, key = fault_server
    body = {"task_id": "warm", "state_embedding": [1.0] * DIM, "reward": 1.0}
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=60,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for _ in range(12):  # every worker opens its connection
            assert client.post("/v1/episodes", json=body).status_code == 201
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", postgres_version(), "main", "restart"],
                       check=True, capture_output=True, timeout=120)
        assert wait_for(lambda: subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode == 0, 60)
        answers = [client.post(path, json=payload).status_code
                   for _ in range(8)
                   for path, payload in (("/v1/episodes", body), ("/v1/episodes/batch", {"episodes": [body] * 3}),
                                         ("/v1/query", {"query_embedding": [1.0] * DIM}))]
    assert answers == [201, 201, 200] * 8, answers
