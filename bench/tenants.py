"""Many small tenants on one server: store throughput, then queries spread over random tenants."""

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
