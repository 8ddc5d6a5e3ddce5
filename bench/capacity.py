"""`python -m bench.capacity`: the measured terms of the capacity model (docs/scaling.md, Capacity).

* Memory of a hot tenant's index per worker: TenantIndex.nbytes() of a tenant of n episodes, dim 384.
* Search time per query in a worker (one BLAS thread): n, filter selectivity, top_k.
* PostgreSQL CPU per request of the hot path: each statement run `--repeat` times on one connection,
  the backend's own CPU time (/proc/<backend pid>/stat, user + system) divided by the count. The
  server must run on this machine (the default DATABASE_URL of the tests does). A scratch database
  is created and dropped.
Prints one JSON object; `--out` also writes it to a file."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DIM = 384


def index_terms(sizes: tuple[int, ...], count: int) -> dict:
    """nbytes and search time per query of an index of each size (one BLAS thread, as in a worker)."""
    from threadpoolctl import threadpool_limits

    from bench.data import make_dataset, make_queries
    from memindex.columns import Filters
    from memindex.index import TenantIndex

    out = {}
    queries = make_queries(32, dim=DIM, seed=3)
    with threadpool_limits(1):
        for n in sizes:
            ds = make_dataset(n, dim=DIM, seed=5)
            index = TenantIndex(DIM, "cosine", capacity=n)
            index.add(ids=list(ds.ids), embeddings=ds.embeddings, seq=np.arange(n), timestamp=ds.timestamp,
                      reward=ds.reward, expires_at=np.full(n, 2**62, dtype=np.int64), task_id=list(ds.task_id),
                      source=list(ds.source), user_id=list(ds.user_id), tags=list(ds.tags))
            cell = {"nbytes": index.nbytes(), "raw_float32_bytes": n * DIM * 4}
            for name, flt in (("none", Filters()), ("broad", Filters(tags_any=("common",))),
                              ("selective", Filters(tags_any=("rare",)))):
                for k in (5, 50):
                    index.search(queries[0], k, flt, 0)
                    t = time.perf_counter()
                    for i in range(count):
                        index.search(queries[i % len(queries)], k, flt, 0)
                    cell[f"search_ms_{name}_k{k}"] = round((time.perf_counter() - t) / count * 1e3, 4)
            out[n] = cell
    return out


def _backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_terms(repeat: int) -> dict:
    """PostgreSQL CPU per execution of each hot-path statement (µs), on a scratch database."""
    from tests.support.database import drop_database, fresh_database_env
    from tests.support.server import LiveServer

    env = fresh_database_env("capacity")
    try:
        LiveServer(env=env).migrate()
        os.environ["DATABASE_URL"] = env["DATABASE_URL"]
        import django

        django.setup()
        return _measure_statements(repeat)
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(env)


def _measure_statements(repeat: int) -> dict:
    """Not split: one setup, then one timed loop per statement, each a few lines."""
    from django.db import connection

    from core import counters, db, usage
    from episodes import changes, images
    from episodes.cache import build_index
    from episodes.selectors import _uuid_array, _winners_sql
    from episodes.services import episodes_store
    from tenants.models import TenantState
    from tenants.selectors import _lookup_sql
    from tenants.services import key_issue, tenant_create

    tenant = tenant_create(slug=f"cap-{uuid.uuid4().hex[:6]}", dim=DIM)
    api_key, _raw = key_issue(tenant=tenant, scope="write")
    rng = np.random.default_rng(1)
    ids = episodes_store(tenant=tenant, episodes=[
        {"task_id": "t", "state_embedding": rng.standard_normal(DIM).astype(np.float32), "reward": 1.0,
         "metadata": {"k": i}, "tags": ["a"]} for i in range(1000)]).ids
    state = TenantState.objects.get(pk=tenant.pk)
    winners = _uuid_array([str(i) for i in ids[:5]])
    images.save(tenant_pk=tenant.pk, generation=state.generation, version=state.version,
                index=build_index(tenant, state).index)
    minute = int(time.time() // 60)
    statements = {
        "key lookup (auth: key, tenant, state)": lambda i: db.fetch_one(_lookup_sql(), [api_key.prefix]),
        "rate-limit hit": lambda i: counters.db_hit(tenant_id=tenant.pk, window_no=i, limit=10**9),
        "winners' fields, top 5": lambda i: db.fetch_all(_winners_sql("postgresql", 0, False), [tenant.pk, winners]),
        # tenant, minute, slot, user ("": tenant-wide), stores, queries
        "usage upsert": lambda i: db.execute(usage._UPSERT_SQL, [tenant.pk, minute, i % 4, "", 0, 1]),
        "catch-up read, nothing new": lambda i: changes.since(tenant_pk=tenant.pk, version=state.version),
        "index image read, 1,000 episodes": lambda i: db.fetch_one(images._READ_SQL, [tenant.pk], binary=True),
    }
    connection.ensure_connection()
    pid = db.fetch_one("SELECT pg_backend_pid()", [])[0]
    out = {}
    for name, run in statements.items():
        for i in range(20):
            run(i)
        cpu, wall = _backend_cpu_s(pid), time.perf_counter()
        for i in range(repeat):
            run(i + 20)
        out[name] = {"server_cpu_us": round((_backend_cpu_s(pid) - cpu) / repeat * 1e6, 1),
                     "round_trip_us": round((time.perf_counter() - wall) / repeat * 1e6, 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--count", type=int, default=200, help="searches per index cell")
    parser.add_argument("--repeat", type=int, default=3000, help="executions per statement")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memcloud.settings")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    result = {"load_average": os.getloadavg(),
              "index": index_terms(tuple(int(s) for s in args.sizes.split(",")), args.count),
              "postgres": postgres_terms(args.repeat)}
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
