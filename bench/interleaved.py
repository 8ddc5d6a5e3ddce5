"""Memcloud and Chroma on the user's path, side by side, interleaved.

Both servers run at once, as on a shared host: ours started as the README says (gunicorn with
memcloud/gunicorn.conf.py, 2 workers, PostgreSQL when DATABASE_URL names it), Chroma with
`chroma run`. Each is filled through its own Python client (ours: `MemcloudClient.store_batch`,
numpy rows), then every measurement alternates between the systems within the same minutes, so
machine noise falls on both: single queries one by one (ours, theirs, ours, theirs; the order
flips each query), through each system's own client and over raw keep-alive HTTP with
pre-encoded bodies; closed-loop QPS at 4 clients in alternating rounds; the 0.1 % filter; recall
against numpy's exact answer. Two datasets: bench/data.py's clustered one and a dense one whose
queries sit inside clusters of near-duplicates.

`python -m bench.interleaved --n 100000` writes bench/results/interleaved.json and
bench/results/interleaved.md (ratios within one run; the load average beside each phase)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from bench import baselines, chroma
from bench.data import Dataset, make_dataset, make_dense_dataset, make_dense_queries, make_queries
from bench.http import Api, query_body
from bench.ingest import sdk_ingest, use_checkout_sdk
from bench.load import closed_loop
from bench.stats import recall_at_k, summarize

HERE = Path(__file__).resolve().parent
K = 5


def load() -> float:
    return round(os.getloadavg()[0], 2)


def ours_raw(url: str, key: str, bodies: list[bytes]) -> Callable[[int], list[str]]:
    api = Api(url, key)
    return lambda i: [h["id"] for h in orjson.loads(api.post("/v1/query", bodies[i % len(bodies)]))["episodes"]]


def ours_sdk(url: str, key: str, queries: np.ndarray, flt: dict) -> Callable[[int], list[str]]:
    use_checkout_sdk()
    from memcloud_client import MemcloudClient

    mc = MemcloudClient(url, key, timeout=60)
    return lambda i: [h.id for h in mc.query(queries[i % len(queries)], top_k=K, **flt)]


def theirs_client(server: chroma.ChromaServer, name: str, queries: np.ndarray, where: dict | None):
    col = server.client().get_collection(name)

    def send(i: int) -> list[str]:
        return col.query(query_embeddings=queries[i % len(queries)][None, :], n_results=K, where=where,
                         include=["distances"])["ids"][0]

    return send


def getter(host_port: tuple[str, int], path: str, headers: dict | None = None) -> Callable[[int], list[str]]:
    """GET `path` on one keep-alive connection (a floor: no body, no search)."""
    import http.client

    conn = http.client.HTTPConnection(*host_port, timeout=60)

    def send(i: int) -> list[str]:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path} answered {resp.status}")
        return []

    return send


def floors(url: str, chroma_port: int, count: int) -> dict:
    """What a request costs before any search, both systems interleaved: ours `/health` (gunicorn
    and Django) and `/ready` (plus one PostgreSQL round trip), Chroma's heartbeat."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    ours = (parts.hostname, parts.port)
    pairs = {"ours_health": getter(ours, "/health"), "ours_ready": getter(ours, "/ready"),
             "chroma_heartbeat": getter(("127.0.0.1", chroma_port), "/api/v2/heartbeat")}
    out = alternate(pairs, count, [])
    return {name: {k: v for k, v in cell.items() if k != "recall"} for name, cell in out.items()}


def alternate(pairs: dict[str, Callable[[int], list[str]]], count: int, exact: list[list[str]]) -> dict:
    """Each query sent to every system in turn (the order rotates by one each query): latency
    summaries and recall@K per system."""
    names = list(pairs)
    times: dict[str, list[float]] = {n: [] for n in names}
    found: dict[str, list[list[str]]] = {n: [] for n in names}
    for name in names:  # warm connections and caches
        for i in range(3):
            pairs[name](i)
    for i in range(count):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            t = time.perf_counter()
            ids = pairs[name](i)
            times[name].append(time.perf_counter() - t)
            if i < len(exact):
                found[name].append(ids)
    return {n: {**summarize(times[n]),
                "recall": round(recall_at_k(found[n], exact[: len(found[n])]), 4) if exact else None}
            for n in names}


def rounds(factories: dict[str, Callable[[], Callable[[int], object]]], *, clients: int, seconds: float,
           repeats: int) -> dict:
    """Closed-loop QPS at `clients`, the systems taking turns, `repeats` rounds: median per system."""
    qps: dict[str, list[float]] = {n: [] for n in factories}
    p50: dict[str, list[float]] = {n: [] for n in factories}
    for r in range(repeats):
        order = list(factories) if r % 2 == 0 else list(factories)[::-1]
        for name in order:
            out = closed_loop(factories[name], concurrency=clients, seconds=seconds, max_requests=1_000_000)
            qps[name].append(out["qps"])
            p50[name].append(out["p50_ms"])
    return {n: {"qps_median": round(float(np.median(qps[n])), 1), "qps_rounds": qps[n],
                "p50_ms_median": round(float(np.median(p50[n])), 3)} for n in factories}


def one_dataset(label: str, ds: Dataset, queries: np.ndarray, srv, dep, chroma_server, *, count: int,
                seconds: float, repeats: int) -> dict:
    out: dict = {"dataset": label, "n": ds.n, "floors": {**floors(srv.url, chroma_server.port, count),
                                                        "loadavg_1m": load()}}
    key = dep.create_tenant(f"il-{label}-{ds.n}", ds.dim)
    out["ingest_ours_sdk"] = {**sdk_ingest(srv.url, key, ds), "loadavg_1m": load()}
    name = f"il-{label}-{ds.n}"
    _, rate = chroma.ingest(chroma_server, ds, name)
    out["ingest_chroma_client"] = {"episodes_per_s": round(rate, 1), "loadavg_1m": load()}
    col = chroma_server.client().get_collection(name)
    path = chroma.COLLECTION_PATH.format(id=col.id)
    for flt, ours_flt in (("none", {}), ("selective", {"tags_any": ["rare"]})):
        exact = baselines.exact_ids(ds, queries, K, flt)
        bodies = [query_body(q, K, flt) for q in queries]
        theirs_bodies = chroma.query_bodies(queries, K, flt)
        where = chroma.chroma_where(flt)
        pairs = {"ours_raw": ours_raw(srv.url, key, bodies),
                 "chroma_raw": chroma.rest_sender(chroma_server.port, path, theirs_bodies),
                 "ours_sdk": ours_sdk(srv.url, key, queries, ours_flt),
                 "chroma_client": theirs_client(chroma_server, name, queries, where)}
        n_queries = count if flt == "none" else max(20, count // 5)  # Chroma scans filters: slow
        out[f"latency_{flt}"] = {**alternate(pairs, n_queries, exact), "loadavg_1m": load()}
        if flt == "none":
            factories = {
                "ours_raw": lambda b=bodies: ours_raw(srv.url, key, b),
                "chroma_raw": lambda b=theirs_bodies: chroma.rest_sender(chroma_server.port, path, b),
                "ours_sdk": lambda: ours_sdk(srv.url, key, queries, {}),
                "chroma_client": lambda: theirs_client(chroma_server, name, queries, None),
            }
            out["qps_4"] = {**rounds(factories, clients=4, seconds=seconds, repeats=repeats), "loadavg_1m": load()}
    return out


def markdown(res: dict) -> str:
    lines = ["# Memcloud and Chroma side by side, interleaved (the user's path)", "",
             "Generated by `bench/interleaved.py`; do not edit by hand. Both servers up at once; each "
             "filled through its own Python client; every figure alternates between the systems within "
             "the same minutes. Ratios are the figures to read on a shared machine.", "",
             f"- Command: `{res['command']}`, {res['date']}; database {res['database']}; "
             f"{res['cores']} cores; load average at start {res['loadavg_start']}", ""]
    for d in res["datasets"]:
        lines += [f"## {d['dataset']} (N = {d['n']:,}, top {K})", "",
                  f"- Ingest: ours through the SDK {d['ingest_ours_sdk']['episodes_per_s']:,.0f} episodes/s "
                  f"(load {d['ingest_ours_sdk']['loadavg_1m']}); Chroma through its client "
                  f"{d['ingest_chroma_client']['episodes_per_s']:,.0f} episodes/s "
                  f"(load {d['ingest_chroma_client']['loadavg_1m']})", "",
                  "| filter | path | ours p50 ms | Chroma p50 ms | ours / Chroma | ours recall | Chroma recall | load |",
                  "|---|---|---|---|---|---|---|---|"]
        for flt in ("none", "selective"):
            cell = d[f"latency_{flt}"]
            for path, a, b in (("raw HTTP", "ours_raw", "chroma_raw"), ("own client", "ours_sdk", "chroma_client")):
                lines.append(f"| {flt} | {path} | {cell[a]['p50_ms']:.2f} | {cell[b]['p50_ms']:.2f} | "
                             f"{cell[a]['p50_ms'] / cell[b]['p50_ms']:.2f} | {cell[a]['recall']:.3f} | "
                             f"{cell[b]['recall']:.3f} | {cell['loadavg_1m']} |")
        f = d["floors"]
        lines += ["", f"Floors, interleaved (load {f['loadavg_1m']}): ours `/health` {f['ours_health']['p50_ms']:.2f} ms, "
                  f"`/ready` (one PostgreSQL round trip) {f['ours_ready']['p50_ms']:.2f} ms; Chroma's heartbeat "
                  f"{f['chroma_heartbeat']['p50_ms']:.2f} ms (p50)."]
        q = d["qps_4"]
        lines += ["", "| QPS at 4 clients (median of alternating rounds) | ours | Chroma | ours / Chroma |",
                  "|---|---|---|---|"]
        for path, a, b in (("raw HTTP", "ours_raw", "chroma_raw"), ("own client", "ours_sdk", "chroma_client")):
            lines.append(f"| {path} | {q[a]['qps_median']} | {q[b]['qps_median']} | "
                         f"{q[a]['qps_median'] / q[b]['qps_median']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0, help="per closed-loop round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--datasets", default="clustered,dense")
    parser.add_argument("--results-dir", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    from bench.deploy import Deployment

    command = "python -m bench.interleaved " + " ".join(argv if argv is not None else os.sys.argv[1:])
    res = {"command": command.strip(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "cores": os.cpu_count(), "loadavg_start": os.getloadavg(), "datasets": []}
    dep = Deployment()
    res["database"] = dep.database
    chroma_server = chroma.ChromaServer()
    try:
        srv = dep.server(2)
        for label in args.datasets.split(","):
            if label == "dense":
                ds, queries = make_dense_dataset(args.n), make_dense_queries(args.queries, args.n)
            else:
                ds, queries = make_dataset(args.n), make_queries(args.queries)
            res["datasets"].append(one_dataset(label, ds, queries, srv, dep, chroma_server, count=args.queries,
                                               seconds=args.seconds, repeats=args.rounds))
            print(json.dumps(res["datasets"][-1])[:2000], flush=True)
    finally:
        chroma_server.stop()
        dep.close()
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "interleaved.json").write_text(json.dumps(res, indent=1))
    (out / "interleaved.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
