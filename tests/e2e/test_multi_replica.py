"""Two independent replicas on one PostgreSQL behind an nginx ingress (docs/api.md §7, docs/deploy.md).

Each replica is its own gunicorn (2 workers, its own port); nginx routes by a consistent hash of
the API key, as the chart's ingress does. Every check runs through nginx and directly against each
replica: correctness must never depend on which replica or worker answers.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from tests.support.database import is_postgres
from tests.support.ingress import NginxIngress, nginx_binary
from tests.support.server import LiveServer
from tests.support.tenants import episode, unique_slug

DIM = 12
RATE_WINDOW_SECS = 3600  # long, so a burst never straddles two windows

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not is_postgres(), reason="multi-replica test runs on PostgreSQL only (DATABASE_URL is not postgres://)"),
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (Debian package `nginx`; .ci/run installs it)"),
]


@dataclass
class Cluster:
    a: LiveServer
    b: LiveServer
    ingress: NginxIngress

    def tenant_key(self, *opts: str) -> str:
        return self.a.create_tenant(unique_slug("mr"), "--dim", str(DIM), *opts)

    @contextmanager
    def clients(self, key: str) -> Iterator[tuple[httpx.Client, httpx.Client, httpx.Client]]:
        """Direct to A, direct to B, through nginx; no keep-alive, so every worker takes turns."""
        with ExitStack() as stack:
            yield tuple(stack.enter_context(_client(url, key)) for url in (self.a.url, self.b.url, self.ingress.url))


def _client(base_url: str, key: str) -> httpx.Client:
    # X-API-Key here, Bearer in other tests: nginx hashes either header.
    return httpx.Client(base_url=base_url, headers={"X-API-Key": key}, timeout=30,
                        limits=httpx.Limits(max_keepalive_connections=0))


@pytest.fixture(scope="module")
def cluster(server_db_env, tmp_path_factory) -> Iterator[Cluster]:
    env = {**server_db_env, "AGENT_MEM_DATA_DIR": str(tmp_path_factory.mktemp("shared-data")),
           "AGENT_MEM_RATE_WINDOW_SECS": str(RATE_WINDOW_SECS)}
    a, b = LiveServer(workers=2, env=env), LiveServer(workers=2, env=env)
    with a, b, NginxIngress([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]) as ingress:
        yield Cluster(a, b, ingress)


def _query_ids(client: httpx.Client, vector: list[float], **flt) -> list[str]:
    r = client.post("/v1/query", json={"query_embedding": vector, "top_k": 1000, **flt})
    assert r.status_code == 200, r.text
    return [hit["id"] for hit in r.json()["episodes"]]


def _everywhere(clients, rng) -> list[list[str]]:
    """Each client's answer to a match-all query, sorted, asked twice (both workers of a replica)."""
    return [sorted(_query_ids(c, rng.normal(size=DIM).tolist())) for c in clients for _ in range(2)]


def test_a_write_on_one_replica_is_read_at_once_on_the_other(cluster):
    rng = np.random.default_rng(61)
    with cluster.clients(cluster.tenant_key()) as (a, b, via):
        routes = [(a, b), (b, a), (via, a), (via, b), (a, via), (b, via)]
        stored = []
        for i in range(48):
            writer, reader = routes[i % len(routes)]
            body = episode(DIM, rng, tags=[f"round{i}"])
            r = writer.post("/v1/episodes", json=body)
            assert r.status_code == 201, r.text
            stored.append(r.json()["id"])
            assert _query_ids(reader, body["state_embedding"], tags_all=[f"round{i}"]) == [stored[-1]]
            got = reader.get(f"/v1/episodes/{stored[-1]}")
            assert got.status_code == 200 and got.json()["task_id"] == body["task_id"]
        r = b.post("/v1/episodes/batch", json={"episodes": [episode(DIM, rng) for _ in range(25)]})
        assert r.status_code == 201, r.text
        stored += r.json()["ids"]
        for client in (a, via, b):
            assert client.get("/v1/stats").json()["episodes"] == len(stored)
        assert _everywhere((a, b, via), rng) == [sorted(stored)] * 6


def test_deletes_and_prunes_on_one_replica_are_seen_everywhere(cluster):
    rng = np.random.default_rng(62)
    with cluster.clients(cluster.tenant_key()) as (a, b, via):
        r = a.post("/v1/episodes/batch", json={"episodes": [
            episode(DIM, rng, timestamp=1_000 + t, reward=float(t % 7)) for t in range(120)]})
        ids = r.json()["ids"]
        assert _everywhere((a, b, via), rng) == [sorted(ids)] * 6  # every cache warm

        for eid in ids[:10]:
            assert b.delete(f"/v1/episodes/{eid}").status_code == 200
            assert a.get(f"/v1/episodes/{eid}").status_code == 404
            assert eid not in _query_ids(via, rng.normal(size=DIM).tolist())
        left = ids[10:]
        assert _everywhere((a, b, via), rng) == [sorted(left)] * 6

        assert a.post("/v1/prune/older-than", json={"timestamp_cutoff_ms": 1_040}).json() == {"removed": 30}
        left = ids[40:]
        assert _everywhere((a, b, via), rng) == [sorted(left)] * 6

        assert via.post("/v1/prune/keep-highest-reward", json={"n": 30}).json() == {"removed": 50}
        survivors = _everywhere((a, b, via), rng)
        assert len(set(map(tuple, survivors))) == 1 and len(survivors[0]) == 30

        assert b.post("/v1/prune/keep-newest", json={"n": 0}).json() == {"removed": 30}
        assert _everywhere((a, b, via), rng) == [[]] * 6
        for client in (a, b, via):
            assert client.get("/v1/stats").json()["episodes"] == 0


def test_the_ingress_sends_a_key_to_one_replica_whichever_header_carries_it(cluster):
    key = cluster.tenant_key()
    replicas = {f"127.0.0.1:{cluster.a.port}", f"127.0.0.1:{cluster.b.port}"}
    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        seen = set()
        for _ in range(12):
            r = httpx.get(f"{cluster.ingress.url}/v1/stats", headers=headers, timeout=30)
            assert r.status_code == 200, r.text
            seen.add(r.headers["X-Upstream"])
        assert len(seen) == 1 and seen <= replicas


def test_the_rate_limit_is_exact_across_replicas(cluster):
    limit = 30
    key = cluster.tenant_key("--rate-limit", str(limit))
    with cluster.clients(key) as clients:
        first = clients[0].get("/v1/stats")
        assert first.status_code == 200 and first.headers["X-RateLimit-Limit"] == str(limit)
        used = 1
        if int(first.headers["X-RateLimit-Reset"]) < 60:  # too close to the window's end: use the next
            time.sleep(int(first.headers["X-RateLimit-Reset"]) + 1)
            used = 0

        def hit(i: int) -> httpx.Response:
            return clients[i % 3].get("/v1/stats")

        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(hit, range(3 * limit)))
    statuses = Counter(r.status_code for r in answers)
    assert statuses == Counter({200: limit - used, 429: 3 * limit - (limit - used)})
    for r in answers:
        assert "X-RateLimit-Remaining" in r.headers
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) > 0 and r.headers["X-RateLimit-Remaining"] == "0"
            assert "error" in r.json()


def test_a_snapshot_saved_on_one_replica_loads_on_the_other(cluster):
    rng = np.random.default_rng(64)
    with cluster.clients(cluster.tenant_key()) as (a, b, via):
        ids = a.post("/v1/episodes/batch", json={"episodes": [episode(DIM, rng) for _ in range(40)]}).json()["ids"]
        saved = a.post("/v1/save", json={"path": "multi-replica"})
        assert saved.status_code == 200, saved.text
        assert saved.json() == {"ok": True, "path": "multi-replica", "episodes": 40}
        listed = b.get("/v1/snapshots").json()["snapshots"]
        assert [(s["path"], s["episodes"]) for s in listed] == [("multi-replica", 40)]

        assert b.post("/v1/prune/keep-newest", json={"n": 0}).json() == {"removed": 40}
        assert _everywhere((a, b, via), rng) == [[]] * 6
        loaded = b.post("/v1/load", json={"path": "multi-replica"})
        assert loaded.status_code == 200, loaded.text
        assert loaded.json() == {"ok": True, "episodes": 40}
        assert _everywhere((a, b, via), rng) == [sorted(ids)] * 6


def _key_routed_to(cluster: Cluster, port: int, attempts: int = 12) -> str:
    for _ in range(attempts):
        key = cluster.tenant_key()
        r = httpx.get(f"{cluster.ingress.url}/v1/stats", headers={"X-API-Key": key}, timeout=30)
        if r.headers.get("X-Upstream") == f"127.0.0.1:{port}":
            return key
    pytest.fail(f"no key out of {attempts} was routed to port {port}: the hash does not spread keys")


def _wait_until_refused(client: httpx.Client, attempts: int = 50) -> None:
    """A killed server's socket may still reset a connection or two before it is gone."""
    for _ in range(attempts):
        try:
            client.get("/v1/stats")
        except httpx.ConnectError:
            return
        except httpx.TransportError:
            pass
        else:
            pytest.fail("the killed replica still answers")
        time.sleep(0.1)
    pytest.fail("the killed replica's port never started refusing connections")


def test_when_a_replica_dies_the_other_keeps_serving_through_the_ingress(cluster):
    rng = np.random.default_rng(65)
    key = _key_routed_to(cluster, cluster.a.port)  # its replica is the one that dies
    with cluster.clients(key) as (a, b, via):
        before = via.post("/v1/episodes/batch", json={"episodes": [episode(DIM, rng) for _ in range(20)]}).json()["ids"]
        cluster.a.kill_all()
        try:
            _wait_until_refused(a)
            after = []
            for i in range(20):
                body = episode(DIM, rng, tags=[f"after{i}"])
                r = via.post("/v1/episodes", json=body)
                assert r.status_code == 201, r.text
                assert r.headers["X-Upstream"].split(", ")[-1] == f"127.0.0.1:{cluster.b.port}"
                after.append(r.json()["id"])
                assert _query_ids(via, body["state_embedding"], tags_all=[f"after{i}"]) == [after[-1]]
            assert sorted(_query_ids(via, rng.normal(size=DIM).tolist())) == sorted(before + after)
            assert sorted(_query_ids(b, rng.normal(size=DIM).tolist())) == sorted(before + after)
        finally:
            cluster.a.start()
        # Back up, A serves everything written while it was down.
        assert sorted(_query_ids(a, rng.normal(size=DIM).tolist())) == sorted(before + after)


def test_keyword_scores_equal_the_oracle_on_every_replica_right_after_a_write(cluster):
    from tests.support.bm25 import bm25_oracle

    rng = np.random.default_rng(65)
    words = ["disk", "full", "ERR_4700", "err_4701", "retry", "the", "the"]
    texts: dict[str, str] = {}
    with cluster.clients(cluster.tenant_key()) as (a, b, via):
        routes = [(a, b), (b, a), (via, a), (a, via)]
        for i in range(16):
            writer, reader = routes[i % len(routes)]
            text = " ".join(rng.choice(words, size=int(rng.integers(1, 6))))
            r = writer.post("/v1/episodes", json=episode(DIM, rng, text=text, timestamp=i))
            assert r.status_code == 201, r.text
            texts[r.json()["id"]] = text
            if i % 5 == 4:  # a delete changes N, df and avgdl for the next query everywhere
                doomed = next(iter(texts))
                assert writer.delete(f"/v1/episodes/{doomed}").status_code == 200
                del texts[doomed]
            query = str(rng.choice(words))
            scores = bm25_oracle(texts, query)
            want = sorted(scores, key=lambda e: (-scores[e], -list(texts).index(e)))  # timestamps follow store order
            for client in (reader, reader, via):
                hits = client.post("/v1/query", json={"mode": "keyword", "query_text": query, "top_k": 100}).json()
                assert [h["id"] for h in hits["episodes"]] == want
                np.testing.assert_allclose([h["score"] for h in hits["episodes"]], [scores[e] for e in want],
                                           rtol=0, atol=1e-6)
