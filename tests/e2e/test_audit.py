"""Acceptance (issue: operations 3): the audit log after a concurrent burst of 1,000 operations from
4 workers has exactly one well-formed line per operation, plus the key events, and no raw key."""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from tests.support.server import LiveServer
from tests.support.tenants import auth, episode, fresh_client, unique_slug

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
DIM = 8
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# 1,000 operations in all.
PLAN = {"store_episode": 400, "store_episodes": 150, "query": 350, "delete_episode": 50,
        "prune_older_than": 25, "prune_keep_newest": 25}


def test_a_burst_of_1000_operations_from_4_workers(server_db_env):
    log_path = Path(tempfile.mkdtemp(prefix="memcloud-audit-")) / "audit.jsonl"
    # No expiry sweep: it would remove (and audit) other tests' expired episodes in the shared database.
    env = {**server_db_env, "AGENT_MEM_AUDIT_LOG": str(log_path), "AGENT_MEM_EXPIRE_INTERVAL_SECS": "0"}
    with LiveServer(workers=4, env=env) as server:
        slugs = [unique_slug("aud"), unique_slug("aud")]
        keys = [server.create_tenant(s, "--dim", str(DIM)) for s in slugs]
        spare = server.manage("issuekey", slugs[1])
        prefix_of = {k: k.split("_")[1] for k in [*keys, spare]}
        rng = np.random.default_rng(3)
        with fresh_client(server.url, keys[0]) as c:  # episodes for the deletes to remove
            doomed = c.post("/v1/episodes/batch", json={"episodes": [
                episode(DIM, rng) for _ in range(PLAN["delete_episode"])]}).json()["ids"]
        jobs = (["store_episode"] * PLAN["store_episode"] + ["store_episodes"] * PLAN["store_episodes"]
                + ["query"] * PLAN["query"] + [f"delete:{i}" for i in doomed]
                + ["prune_older_than"] * PLAN["prune_older_than"] + ["prune_keep_newest"] * PLAN["prune_keep_newest"])
        np.random.default_rng(4).shuffle(jobs)

        clients = [fresh_client(server.url, k) for k in keys]  # no keep-alive: requests spread over workers

        def run(i_job: tuple[int, str]) -> int:
            i, job = i_job
            c = clients[0] if job.startswith("delete") else clients[i % 2]
            body_rng = np.random.default_rng(i)
            if job == "store_episode":
                r = c.post("/v1/episodes", json=episode(DIM, body_rng, task_id=f"task_{i}"))
            elif job == "store_episodes":
                r = c.post("/v1/episodes/batch", json={"episodes": [episode(DIM, body_rng) for _ in range(3)]})
            elif job == "query":
                r = c.post("/v1/query", json={"query_embedding": body_rng.normal(size=DIM).tolist()})
            elif job.startswith("delete"):
                r = c.delete(f"/v1/episodes/{job.split(':')[1]}")
            elif job == "prune_older_than":
                r = c.post("/v1/prune/older-than", json={"timestamp_cutoff_ms": 0})
            else:
                r = c.post("/v1/prune/keep-newest", json={"n": 100000})
            assert r.status_code in (200, 201), r.text
            return r.status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            assert len(list(pool.map(run, enumerate(jobs)))) == 1000
        for c in clients:
            c.close()
        bad = ["mc_zzzzzzzz_not-a-real-secret", "not-even-a-key", keys[0][:-2] + "xx"]
        for raw in bad:
            assert httpx.get(f"{server.url}/v1/stats", headers=auth(raw)).status_code == 401
        assert httpx.get(f"{server.url}/v1/stats", headers={"Authorization": "Basic abc"}).status_code == 401
        server.manage("revokekey", prefix_of[spare])

    raw_text = log_path.read_text()
    lines = raw_text.splitlines()
    entries = [orjson.loads(line) for line in lines]  # every line is one JSON object
    assert raw_text.endswith("\n") and len(lines) == len(entries)
    counts = Counter(e["op"] for e in entries)
    setup = Counter({"store_episodes": 1})  # the batch that made the episodes the deletes remove
    assert {op: counts[op] for op in PLAN} == dict(Counter(PLAN) + setup)
    assert counts["key_issued"] == 3 and counts["key_revoked"] == 1 and counts["auth_failed"] == 4
    assert len(entries) == 1000 + 1 + 3 + 1 + 4  # nothing else was written
    for e in entries:
        assert TS.match(e["ts"]) and "key_prefix" in e
        if e["op"] == "auth_failed":
            assert e["tenant_id"] is None
        else:
            assert e["tenant_id"] in slugs and e["key_prefix"] in prefix_of.values()
        if e["op"] == "store_episode":
            assert e["task_id"].startswith("task_") and e["episode_count"] == 1
        if e["op"] in ("query", "delete_episode", "prune_older_than", "prune_keep_newest", "store_episodes"):
            assert isinstance(e["episode_count"], int)
    failed = sorted((e["key_prefix"] or "") for e in entries if e["op"] == "auth_failed")
    assert failed == sorted(["", "", "zzzzzzzz", prefix_of[keys[0]]])
    for key in [*keys, spare, *bad]:
        assert key.split("_", 2)[-1] not in raw_text  # never any secret
