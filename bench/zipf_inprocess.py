"""`python -m bench.zipf_inprocess`: one warm tenant against Zipf access over many small tenants, in
one process through Django's test client and the whole middleware, on a scratch PostgreSQL (or
SQLite) database; the index cache's budget set so that a share of the queries miss. Prints JSON.
Separates the per-query cost of many tenants from the HTTP load generator's (docs/scaling.md §4)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.zipf_inprocess", description=__doc__)
    parser.add_argument("--tenants", type=int, default=300)
    parser.add_argument("--per-tenant", type=int, default=1000)
    parser.add_argument("--budget-mb", type=int, default=30)
    parser.add_argument("--queries", type=int, default=1000, help="per timed run")
    parser.add_argument("--s", type=float, default=1.1)
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.support.database import drop_database, fresh_database_env
    from tests.support.server import LiveServer

    # The workers' malloc setting (memcloud/gunicorn.conf.py post_fork): every block of 128 KiB or
    # more gets fresh pages, so a miss's buffers cost their page faults here as they do there (with
    # glibc's default the replay reused heap pages: a 1.6 MB image copy took 1 ms instead of 3-4).
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL(None).mallopt(-3, 128 * 1024)
    env = fresh_database_env("zipf")
    env.update({"AGENT_MEM_DATA_DIR": tempfile.mkdtemp(prefix="zipf-data-"), "DJANGO_DEBUG": "0",
                "DJANGO_SECRET_KEY": "x" * 50, "DJANGO_ALLOWED_HOSTS": "testserver"})
    try:
        LiveServer(env=env).migrate()
        os.environ.update(env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memcloud.settings")
        import django

        django.setup()
        print(json.dumps(_measure(args), indent=1))
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(env)
    return 0


def _measure(args) -> dict:
    """Not split: setup, warm-up, then the interleaved timed runs, each a few lines."""
    from django.core.management import call_command
    from django.test import Client

    from episodes.cache import cache
    from episodes.services import episodes_store
    from tenants.services import key_issue, tenant_create

    rng = np.random.default_rng(3)
    block = [{"task_id": f"t{i % 5}", "state_embedding": rng.standard_normal(384).astype(np.float32),
              "reward": 1.0, "tags": ["a"] if i % 2 else []} for i in range(args.per_tenant)]
    keys = []
    for i in range(args.tenants):
        tenant = tenant_create(slug=f"zipf-{i:05d}", dim=384)
        keys.append(key_issue(tenant=tenant, scope="write")[1])
        episodes_store(tenant=tenant, episodes=block)
    images = call_command("indeximages", "--all")
    cache.budget = args.budget_mb * 1024 * 1024
    weights = np.arange(1, args.tenants + 1, dtype=float) ** -args.s
    picks = rng.permutation(args.tenants)[rng.choice(args.tenants, size=4 * args.queries, p=weights / weights.sum())]
    body = json.dumps({"query_embedding": rng.standard_normal(384).tolist(), "top_k": 5})
    client = Client()

    def run(choose, offset: int) -> float:
        started = time.perf_counter()
        for i in range(args.queries):
            response = client.post("/v1/query", body, content_type="application/json",
                                   HTTP_AUTHORIZATION=f"Bearer {keys[choose(offset + i)]}")
            assert response.status_code == 200, response.content
        return (time.perf_counter() - started) / args.queries * 1e3

    run(lambda i: int(picks[i]), 0)  # warm-up
    evictions = cache.evictions
    warm_a, zipf, warm_b = run(lambda i: 0, 0), run(lambda i: int(picks[i]), args.queries), run(lambda i: 0, 0)
    warm = statistics.mean([warm_a, warm_b])
    return {"load_average": os.getloadavg(), "tenants": args.tenants, "per_tenant": args.per_tenant,
            "budget_mb": args.budget_mb, "images": images, "warm_mean_ms": round(warm, 3),
            "zipf_mean_ms": round(zipf, 3), "ratio": round(warm / zipf, 3),
            "zipf_miss_share": round((cache.evictions - evictions) / args.queries, 3)}


if __name__ == "__main__":
    raise SystemExit(main())
