"""Acceptance (issue: operations 2): /metrics sums every gunicorn worker, whichever answers."""

from __future__ import annotations

import os
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.database import drop_database, fresh_database_env
from tests.support.server import LiveServer
from tests.support.tenants import episode, fresh_client, unique_slug

pytestmark = pytest.mark.e2e
DIM = 8
TOKEN = "e2e-scrape-token"  # scrapes carry it; no source network is allowed (the server has a token)


@pytest.fixture(scope="module")
def metrics_server() -> Iterator[LiveServer]:
    """4 workers on a database of its own, so that database-derived gauges are exact too."""
    env = fresh_database_env("metrics")
    prom_dir = tempfile.mkdtemp(prefix="memcloud-prom-test-")
    server = LiveServer(workers=4, env={**env, "PROMETHEUS_MULTIPROC_DIR": prom_dir,
                                        "AGENT_MEM_METRICS_TOKEN": TOKEN, "AGENT_MEM_METRICS_ALLOW": ""})
    server.migrate()
    server.prom_dir = Path(prom_dir)
    with server:
        yield server
    drop_database(env)


def scrape(url: str) -> dict[str, float]:
    """Samples by name and labels, e.g. 'agent_mem_query_total' or 'x{a="b"}'."""
    r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)  # any worker
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_counters_are_exact_whichever_worker_answers(metrics_server):
    rng = np.random.default_rng(5)
    server = metrics_server
    slugs = [unique_slug("m"), unique_slug("m"), unique_slug("m")]
    keys = [server.create_tenant(s, "--dim", str(DIM)) for s in slugs]
    requests = 0
    fixed_ids = [str(uuid.uuid4()) for _ in range(5)]

    def store_one(i: int) -> int:
        with fresh_client(server.url, keys[i % 2]) as c:
            r = c.post("/v1/episodes", json=episode(DIM, rng))
            assert r.status_code == 201, r.text
        return 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        singles = sum(pool.map(store_one, range(40)))
    requests += 40
    with fresh_client(server.url, keys[0]) as c:
        batch = {"episodes": [episode(DIM, rng, id=i) for i in fixed_ids]}
        assert c.post("/v1/episodes/batch", json=batch).status_code == 201
        assert c.post("/v1/episodes/batch", json=batch).status_code == 200  # idempotent retry: nothing new
        assert c.post("/v1/episodes", json=episode(DIM, rng, state_embedding=[1.0])).status_code == 400
        requests += 3
    stored = singles + len(fixed_ids)

    def query(i: int) -> int:
        with fresh_client(server.url, keys[i % 2]) as c:
            r = c.post("/v1/query", json={"query_embedding": rng.normal(size=DIM).tolist(), "top_k": 3})
            assert r.status_code == 200, r.text
        return 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        answered = sum(pool.map(query, range(30)))
    with fresh_client(server.url, keys[1]) as c:
        assert c.post("/v1/query", json={"query_embedding": [0.0] * DIM}).status_code == 400  # not answered 200
        assert c.post("/v1/query", json={"topk": 3}).status_code == 400
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/v1/stats").status_code == 401  # unauthenticated /v1 requests count too
        assert anonymous.get("/v1/no-such-thing").status_code == 404
    requests += answered + 4

    # Each worker wrote its own files: the sums below come from more than one process.
    assert len(list(server.prom_dir.glob("counter_*.db"))) >= 2
    for _ in range(12):
        m = scrape(server.url)
        assert m["agent_mem_store_episodes_total"] == stored
        assert m["agent_mem_query_total"] == answered
        assert m["agent_mem_requests_total"] == requests
        assert m["agent_mem_tenants_active"] == 2  # the third tenant has no episode
        assert m['agent_mem_request_duration_seconds_count{endpoint="query",method="POST",status="200"}'] == answered
        assert m['agent_mem_request_duration_seconds_count{endpoint="query",method="POST",status="400"}'] == 2
        assert m["agent_mem_index_cache_bytes"] > 0
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert not any(slug in text for slug in slugs) and not any(key in text for key in keys)


def test_counters_survive_a_worker_that_dies(metrics_server):
    server = metrics_server
    before = scrape(server.url)
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (victim in server.worker_pids() or len(server.worker_pids()) < 4):
        time.sleep(0.2)
    assert victim not in server.worker_pids()
    for _ in range(6):
        after = scrape(server.url)
        for name in ("agent_mem_store_episodes_total", "agent_mem_query_total", "agent_mem_requests_total"):
            assert after[name] == before[name]


def test_without_the_token_metrics_is_403_json_and_the_dashboard_asks_for_a_login(metrics_server):
    """The server runs as in development (DJANGO_DEBUG on) but with a token: loopback is not enough."""
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        r = httpx.get(f"{metrics_server.url}/metrics", headers=headers)
        assert r.status_code == 403 and r.headers["content-type"] == "application/json"
        assert "error" in r.json() and "agent_mem" not in r.text
    r = httpx.get(f"{metrics_server.url}/dashboard", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/admin/login/?next=/dashboard"
    assert httpx.get(f"{metrics_server.url}/health").text == "ok"
