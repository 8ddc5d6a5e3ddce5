"""Many small tenants on one server: store throughput, then queries spread over random tenants;
cold first queries (the deployment's first, which builds and writes the tenant's index image, and a
new worker's first, which loads it from the host's copy, or from the database on a host without
copies); and thousands of tenants under Zipf-distributed access against
one warm tenant on the same server (docs/scaling.md, Capacity)."""

from __future__ import annotations

import time

import numpy as np

from bench.data import make_dataset, make_queries, slice_dataset
from bench.deploy import Deployment
from bench.http import Api, batches, query_body
from bench.load import closed_loop
from bench.stats import summarize


def bench_many_tenants(dep: Deployment, *, tenants: int, per_tenant: int, workers: int, seconds: float,
                       store_seconds: float, concurrencies: tuple[int, ...], dim: int,
                       index_memory_mb: int) -> list[dict]:
    slugs = [f"many-{i:04d}" for i in range(tenants)]
    t = time.perf_counter()
    keys = dep.create_tenants(slugs, dim)
    setup_s = time.perf_counter() - t
    server = dep.server(workers, AGENT_MEM_INDEX_MEMORY_MB=str(index_memory_mb))
    ds = make_dataset(tenants * per_tenant, dim=dim, seed=31)
    # Tenants are filled over HTTP until store_seconds of request time, the rest through the service.
    spent, via_http, rest = 0.0, 0, []
    for i, slug in enumerate(slugs):
        lo, hi = i * per_tenant, (i + 1) * per_tenant
        if spent < store_seconds:
            api = Api(server.url, keys[slug])
            spent += sum(api.timed_post("/v1/episodes/batch", body) for body in batches(slice_dataset(ds, lo, hi), 1000))
            via_http += hi - lo
        else:
            rest.append((slug, lo, hi))
    dep.preload_many(ds, rest)
    case = {"tenants": tenants, "per_tenant": per_tenant, "index_memory_mb": index_memory_mb}
    out: list[dict] = [{"system": "http", "op": "many_store", **case, "tenant_setup_s": round(setup_s, 2),
                        "episodes": via_http, "episodes_per_s": round(via_http / spent, 1)}]
    queries = make_queries(64, dim=dim, seed=31)
    bodies = [query_body(q, 5, "none") for q in queries]
    rng = np.random.default_rng(5)
    # First touch of each tenant (a worker builds its index from the database), in random order.
    order = rng.permutation(tenants)[: min(tenants, 300)]
    api = Api(server.url, keys[slugs[0]])
    first = [api.timed_post("/v1/query", bodies[j % len(bodies)], key=keys[slugs[i]]) for j, i in enumerate(order)]
    out.append({"system": "http", "op": "many_query_first", **case, **summarize(first)})
    # New workers (a restart): each tenant's first query now loads the image the first pass wrote,
    # from the host's copy; then, on a host without copies, from the database.
    for op, env in (("many_query_cold", {}), ("many_query_cold_db", {"AGENT_MEM_IMAGE_CACHE_MB": "0"})):
        server.stop()
        server = dep.server(workers, AGENT_MEM_INDEX_MEMORY_MB=str(index_memory_mb), **env)
        api = Api(server.url, keys[slugs[0]])
        cold = [api.timed_post("/v1/query", bodies[j % len(bodies)], key=keys[slugs[i]]) for j, i in enumerate(order)]
        out.append({"system": "http", "op": op, **case, **summarize(cold)})
    picks = rng.integers(0, tenants, 100_000)

    def factory():
        api = Api(server.url, keys[slugs[0]])

        def send(i: int) -> object:
            key = keys[slugs[int(picks[i % picks.size])]]
            return api.post("/v1/query", bodies[i % len(bodies)], key=key)

        return send

    for c in concurrencies:
        load = closed_loop(factory, concurrency=c, seconds=seconds, max_requests=picks.size)
        out.append({"system": "http", "op": "many_query_load", **case, **load})
    server.stop()
    return out


def zipf_picks(rng: np.random.Generator, tenants: int, s: float, count: int) -> np.ndarray:
    """`count` tenant numbers in [0, tenants) drawn with P(rank r) proportional to r**-s."""
    weights = np.arange(1, tenants + 1, dtype=np.float64) ** -s
    picks = rng.choice(tenants, size=count, p=weights / weights.sum())
    return rng.permutation(tenants)[picks]  # ranks spread over the tenants, not by creation order


def bench_zipf_tenants(dep: Deployment, *, tenants: int, per_tenant: int, blocks: int, workers: int,
                       clients: int, s: float, warmup_s: float, seconds: float, dim: int,
                       index_memory_mb: int = 1024) -> list[dict]:
    """Thousands of tenants of `per_tenant` episodes (their data cycled over `blocks` distinct
    blocks: the index work is the same, the generation and memory are not) under Zipf access from
    `clients` clients, after `warmup_s` of the same load, against one warm tenant on the same server;
    within the default cache budget (AGENT_MEM_INDEX_MEMORY_MB, 1024 MB per worker)."""
    slugs = [f"zipf-{i:05d}" for i in range(tenants)]
    t = time.perf_counter()
    keys = dep.create_tenants(slugs, dim)
    ds = make_dataset(blocks * per_tenant, dim=dim, seed=37)
    # The first `blocks` tenants through the service's write path; on PostgreSQL the rest are copies
    # of them made in the database (the same rows and counters), which takes minutes, not an hour.
    cloned = slugs[blocks:] if dep.database == "postgresql" else []
    dep.preload_many(ds, [(slug, (i % blocks) * per_tenant, (i % blocks + 1) * per_tenant)
                          for i, slug in enumerate(slugs) if i < blocks or not cloned])
    dep.clone_tenants([(slugs[i % blocks], slug) for i, slug in enumerate(cloned, start=blocks)])
    setup_s = time.perf_counter() - t
    t = time.perf_counter()
    dep.write_images()  # the steady state of a hosted service: each small tenant has its image
    dep.quiesce()
    case = {"tenants": tenants, "per_tenant": per_tenant, "zipf_s": s, "clients": clients,
            "index_memory_mb": index_memory_mb,
            "warmup_s": warmup_s, "setup_s": round(setup_s, 1), "images_s": round(time.perf_counter() - t, 1)}
    server = dep.server(workers, AGENT_MEM_INDEX_MEMORY_MB=str(index_memory_mb))
    bodies = [query_body(q, 5, "none") for q in make_queries(64, dim=dim, seed=37)]
    rng = np.random.default_rng(11)
    picks = zipf_picks(rng, tenants, s, 1_000_000)

    def factory_for(choose):
        def factory():
            api = Api(server.url, keys[slugs[0]])

            def send(i: int) -> object:
                return api.post("/v1/query", bodies[i % len(bodies)], key=keys[slugs[choose(i)]])

            return send

        return factory

    zipf = factory_for(lambda i: int(picks[i % picks.size]))
    closed_loop(zipf, concurrency=clients, seconds=warmup_s, max_requests=picks.size)
    out = []
    # Interleaved: warm one tenant, Zipf, warm again; the ratio uses the mean of the two warm runs.
    warm_a = closed_loop(factory_for(lambda i: 0), concurrency=clients, seconds=seconds, max_requests=10**7)
    load = closed_loop(zipf, concurrency=clients, seconds=seconds, max_requests=picks.size)
    warm_b = closed_loop(factory_for(lambda i: 0), concurrency=clients, seconds=seconds, max_requests=10**7)
    # Rounded as recorded: the ratio is the one a reader computes from the two figures shown.
    warm_qps = round((warm_a["qps"] + warm_b["qps"]) / 2, 2)
    out.append({"system": "http", "op": "zipf_warm_one_tenant", **case, **warm_a, "qps": warm_qps,
                "p99_ms": max(warm_a["p99_ms"], warm_b["p99_ms"])})
    out.append({"system": "http", "op": "zipf_query_load", **case, **load,
                "ratio_to_warm": round(load["qps"] / warm_qps, 3) if warm_qps else None})
    server.stop()
    return out


def main() -> int:
    """`python -m bench.tenants` (`make bench-tenants`): the many-tenants phases of `make bench` on
    their own, at the issue's scale by default (10,000 Zipf tenants within the default budget)."""
    import argparse
    import json
    import platform
    import sys
    from pathlib import Path

    from bench.report import many_tenant_targets, table, tenant_tables
    from bench.run import DIM, provenance

    parser = argparse.ArgumentParser(prog="python -m bench.tenants", description=main.__doc__)
    parser.add_argument("--tenants", type=int, default=100, help="small tenants for the cold-query phases")
    parser.add_argument("--per-tenant", type=int, default=1000)
    parser.add_argument("--zipf-tenants", type=int, default=10_000)
    parser.add_argument("--zipf-blocks", type=int, default=20)
    parser.add_argument("--index-mb", type=int, default=1024, help="AGENT_MEM_INDEX_MEMORY_MB (the default)")
    parser.add_argument("--warmup", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "tenants")
    args = parser.parse_args()
    command = " ".join(["python -m bench.tenants", *sys.argv[1:]])
    dep = Deployment()
    try:
        rec = bench_many_tenants(dep, tenants=args.tenants, per_tenant=args.per_tenant, workers=2, seconds=3.0,
                                 store_seconds=20, concurrencies=(1, 4), dim=DIM, index_memory_mb=args.index_mb)
        rec += bench_zipf_tenants(dep, tenants=args.zipf_tenants, per_tenant=args.per_tenant, blocks=args.zipf_blocks,
                                  workers=2, clients=4, s=1.1, warmup_s=args.warmup, seconds=args.seconds, dim=DIM,
                                  index_memory_mb=args.index_mb)
        database = dep.database
    finally:
        dep.close()
    lines = ["# Many tenants", "", "Generated by `bench/tenants.py`; do not edit by hand. A 2-worker server started as "
             f"the README says, on {database}.", "",
             *provenance(command, f"Python {platform.python_version()}"), "",
             table(["target", "measured", "met"], [list(row) for row in many_tenant_targets(rec)]), "",
             *tenant_tables(rec, args.index_mb)]
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "records": rec}, indent=1))
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
