"""max_episodes under concurrent batch stores through 4 workers: no overshoot (docs/api.md §5)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.support.server import LiveServer
from tests.support.tenants import episode, fresh_client, unique_slug

pytestmark = pytest.mark.e2e
DIM, QUOTA, BATCH, BATCHES = 8, 100, 7, 30


def test_parallel_batches_never_overshoot_the_quota(server_db_env):
    with LiveServer(workers=4, env=server_db_env) as server:
        key = server.create_tenant(unique_slug("quota"), "--dim", str(DIM), "--max-episodes", str(QUOTA))
        rng = np.random.default_rng(9)
        bodies = [{"episodes": [episode(DIM, rng) for _ in range(BATCH)]} for _ in range(BATCHES)]
        with fresh_client(server.url, key) as client, ThreadPoolExecutor(max_workers=BATCHES) as pool:
            answers = list(pool.map(lambda body: client.post("/v1/episodes/batch", json=body), bodies))
            codes = [r.status_code for r in answers]
            assert codes.count(201) == QUOTA // BATCH and codes.count(403) == BATCHES - QUOTA // BATCH, codes
            for r in answers:
                if r.status_code == 403:
                    assert "max_episodes" in r.json()["error"] and str(QUOTA) in r.json()["error"]
            assert client.get("/v1/stats").json()["episodes"] == QUOTA // BATCH * BATCH
            stored = {i for r in answers if r.status_code == 201 for i in r.json()["ids"]}
            found = client.post("/v1/query", json={"query_embedding": rng.normal(size=DIM).tolist(),
                                                   "top_k": 1000}).json()["episodes"]
            assert {e["id"] for e in found} == stored  # nothing of a refused batch was kept
            one_more = client.post("/v1/episodes", json=episode(DIM, rng))
            if QUOTA % BATCH:  # room for singles up to the quota, then a 403
                for _ in range(QUOTA % BATCH - 1):
                    assert client.post("/v1/episodes", json=episode(DIM, rng)).status_code == 201
                assert one_more.status_code == 201
            assert client.post("/v1/episodes", json=episode(DIM, rng)).status_code == 403
            assert client.get("/v1/stats").json()["episodes"] == QUOTA
