"""Turn results JSON into bench/RESULTS.md (tables, targets met or not) and a latency-vs-N plot."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("full", "quick")
PLOTTED = (  # (label, system, extra match)
    ("numpy exact, 1 BLAS thread", "numpy", {"blas_threads": 1}),
    ("numpy exact, default BLAS threads", "numpy", {"blas_threads": "default"}),
    ("TenantIndex in-process, 1 BLAS thread", "index", {"blas_threads": 1}),
    ("Memcloud HTTP (gunicorn)", "http", {"op": "query_load", "concurrency": 1}),
    ("Chroma server (HNSW)", "chroma", {"op": "query"}),
    ("pgvector exact", "pgvector-exact", {}),
    ("pgvector HNSW", "pgvector-hnsw", {"op": "query"}),
)


def find(records: list[dict], **match) -> list[dict]:
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def one(records: list[dict], **match) -> dict | None:
    found = find(records, **match)
    return found[0] if found else None


def query_p50(records: list[dict], system: str, n: int, k: int = 5, flt: str = "none", **extra) -> float | None:
    op = extra.pop("op", "query_load" if system == "http" else "query")
    extra.setdefault("concurrency", 1)
    r = one(records, system=system, op=op, n=n, top_k=k, filter=flt, **extra)
    return r["p50_ms"] if r else None


def fmt(x, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def targets(res: dict) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows for the issue's targets, from one run's records."""
    rec = res["records"]
    rows = []
    http100, ix100 = query_p50(rec, "http", 100_000), query_p50(rec, "index", 100_000, blas_threads=1)
    ix100d = query_p50(rec, "index", 100_000, blas_threads="default")
    ok = None if http100 is None or ix100 is None else http100 <= 2 * ix100
    rows.append(("HTTP query p50 ≤ 2× in-process exact search, N=100k, no filter, top 5",
                 f"{fmt(http100)} ms vs {fmt(ix100)} ms (1 BLAS thread, as in a worker; "
                 f"{fmt(ix100d)} ms with default threads)", verdict(ok)))
    http10 = query_p50(rec, "http", 10_000)
    rows.append(("HTTP query p50 ≤ 5 ms at N=10k", f"{fmt(http10)} ms",
                 verdict(None if http10 is None else http10 <= 5)))
    for c in res["plan"]["concurrencies"]:
        ours = one(rec, system="http", op="query_load", n=100_000, top_k=5, filter="none", concurrency=c)
        theirs = one(rec, system="chroma", op="query_load", n=100_000, top_k=5, filter="none", concurrency=c)
        recall = one(rec, system="chroma", op="query", n=100_000, top_k=5, filter="none")
        ok = None if not (ours and theirs) else ours["qps"] >= 1.5 * theirs["qps"]
        rows.append((f"QPS ≥ 1.5× Chroma at N=100k, concurrency {c}",
                     f"{fmt(ours and ours['qps'], 1)} vs {fmt(theirs and theirs['qps'], 1)} QPS "
                     f"(recall@5 1.0 vs {fmt(recall and recall['recall'], 3)})", verdict(ok)))
    for size in (1000, 100):
        stores = [r for r in find(rec, system="http", op="store", batch=size)]
        best = max(stores, key=lambda r: r["n"]) if stores else None
        rows.append((f"Batch store ≥ 10,000 episodes/s (batches of {size})",
                     f"{fmt(best and best['episodes_per_s'], 0)} episodes/s",
                     verdict(None if best is None else best["episodes_per_s"] >= 10_000)))
    single = [r for r in find(rec, system="http", op="store", batch=1)]
    worst = max(single, key=lambda r: r["p50_ms"]) if single else None
    rows.append(("Single store p50 ≤ 5 ms", f"{fmt(worst and worst['p50_ms'])} ms (p99 "
                 f"{fmt(worst and worst['p99_ms'])} ms)", verdict(None if worst is None else worst["p50_ms"] <= 5)))
    mem = one(rec, system="http", op="memory", n=100_000)
    rows.append(("Worker memory ≤ 1.3× the raw float32 matrix (N=100k)",
                 f"{fmt(mem and mem['ratio_to_raw'], 2)}× ({fmt(mem and mem['rss_delta_mib'], 1)} MiB RSS growth "
                 f"for a {fmt(mem and mem['raw_matrix_mib'], 1)} MiB matrix)",
                 verdict(None if mem is None else mem["ratio_to_raw"] <= 1.3)))
    cu = one(rec, system="http", op="catch_up", n=100_000, stored=1)
    rows.append(("Catch-up after 1 new episode ≤ 2 ms (N=100k)",
                 f"{fmt(cu and cu['catch_up_ms'], 2)} ms over the steady query, median of "
                 f"{fmt(cu and cu.get('repeats', 1))} (first query "
                 f"{fmt(cu and cu['first_ms'])} ms, steady {fmt(cu and cu['steady_p50_ms'])} ms)",
                 verdict(None if cu is None else cu["catch_up_ms"] <= 2)))
    rows += many_tenant_targets(rec)
    return rows


def many_tenant_targets(rec: list[dict]) -> list[tuple[str, str, str]]:
    """The many-tenants targets (docs/scaling.md): a new worker's cold first query of a
    1,000-episode tenant, and Zipf access over many tenants against one warm tenant."""
    cold = one(rec, system="http", op="many_query_cold")
    cold_db = one(rec, system="http", op="many_query_cold_db")
    first = one(rec, system="http", op="many_query_first")
    rows = [(f"Cold first query of a {fmt(cold and cold['per_tenant'])}-episode tenant ≤ 5 ms p50 (a new worker, "
             f"the host's copy of the image)", f"{fmt(cold and cold['p50_ms'])} ms",
             verdict(None if cold is None else cold["p50_ms"] <= 5)),
            ("… the same, a host without copies (the image read from the database)",
             f"{fmt(cold_db and cold_db['p50_ms'])} ms", verdict(None if cold_db is None else cold_db["p50_ms"] <= 5)),
            ("… the deployment's very first (built from the rows; the image written after the answer)",
             f"{fmt(first and first['p50_ms'])} ms", verdict(None if first is None else first["p50_ms"] <= 5))]
    load, warm = one(rec, system="http", op="zipf_query_load"), one(rec, system="http", op="zipf_warm_one_tenant")
    ok = None if not (load and warm) else load["ratio_to_warm"] >= 0.8 and load["p99_ms"] <= 30
    rows.append((f"Zipf over {fmt(load and load['tenants'])} tenants: QPS ≥ 0.8× one warm tenant, p99 ≤ 30 ms",
                 f"{fmt(load and load['qps'], 1)} vs {fmt(warm and warm['qps'], 1)} QPS "
                 f"(×{fmt(load and load['ratio_to_warm'], 2)}), p99 {fmt(load and load['p99_ms'])} ms", verdict(ok)))
    return rows


def margin(measured: float | None, limit: float) -> str:
    """How far a measured value is from an upper limit: the share below it, or the multiple above."""
    if measured is None:
        return "–"
    if measured <= limit:
        return f"{100 * (1 - measured / limit):.0f} % below"
    return f"{measured / limit:.2f}× the limit"


def exact_targets(res: dict) -> list[tuple[str, str, str, str]]:
    """(target, measured, margin, verdict) rows for the quantised-scan issue's targets."""
    rec = res["records"]
    rows = []
    ours, chroma = query_p50(rec, "http", 100_000), query_p50(rec, "chroma", 100_000)
    rows.append(("HTTP query p50 ≤ Chroma's HTTP p50, N=100k, no filter, top 5",
                 f"{fmt(ours)} ms vs {fmt(chroma)} ms", "–" if chroma is None else margin(ours, chroma),
                 verdict(None if ours is None or chroma is None else ours <= chroma)))
    recalls = find(rec, system="http", op="recall", n=100_000)
    low = min((r["recall"] for r in recalls), default=None)
    rows.append(("Recall 1.0 over HTTP at N=100k (every top_k and filter, against numpy's exact answer)",
                 f"lowest {fmt(low, 3)} over {len(recalls)} cells", "–", verdict(None if low is None else low >= 1.0)))
    mem = one(rec, system="http", op="memory", n=100_000)
    ratio = mem and mem["ratio_to_raw"]
    rows.append(("Worker RSS ≤ 0.35× the raw float32 matrix (N=100k)", f"{fmt(ratio, 2)}×", margin(ratio, 0.35),
                 verdict(None if mem is None else ratio <= 0.35)))
    sel = query_p50(rec, "http", 100_000, flt="selective")
    rows.append(("0.1 % filter p50 ≤ 1 ms over HTTP (N=100k, top 5)", f"{fmt(sel)} ms", margin(sel, 1.0),
                 verdict(None if sel is None else sel <= 1.0)))
    sel_index = query_p50(rec, "index", 100_000, flt="selective", blas_threads=1)
    rows.append(("0.1 % filter p50 ≤ 1 ms in process (N=100k, top 5, the index as in a worker)",
                 f"{fmt(sel_index)} ms", margin(sel_index, 1.0), verdict(None if sel_index is None else sel_index <= 1.0)))
    big = query_p50(rec, "index", 1_000_000, blas_threads=1)
    rows.append(("In-process p50 ≤ 20 ms at N=1M (no filter, top 5, as in a worker)",
                 f"{fmt(big)} ms" if big is not None else "not in this run (`make bench-full`)", margin(big, 20),
                 verdict(None if big is None else big <= 20)))
    return rows


def ingest_targets(res: dict) -> list[tuple[str, str, str, str]]:
    """(target, measured, margin, verdict) rows for ingest on the user's path, at the largest N."""
    rec = res["records"]
    rows = []
    for system, limit, what in (("sdk", 20_000, "SDK `store_batch` end to end (numpy rows, encoding on the clock)"),
                                ("http-binary", 30_000, "server, pre-encoded binary bodies, one connection a worker")):
        runs = find(rec, system=system, op="ingest")
        best = max(runs, key=lambda r: r["n"]) if runs else None
        rate = best and best["episodes_per_s"]
        peers = {p: one(rec, system=p, op="ingest", n=best["n"]) for p in ("chroma", "pgvector")} if best else {}
        beside = ", ".join(f"{p} {fmt(r['episodes_per_s'], 0)}/s" for p, r in peers.items() if r)
        rows.append((f"Ingest ≥ {limit:,} episodes/s: {what}, N={best['n']:,}" if best else
                     f"Ingest ≥ {limit:,} episodes/s: {what}",
                     f"{fmt(rate, 0)} episodes/s (load average {fmt(best and best.get('loadavg_1m'))})"
                     + (f"; beside {beside}" if beside else ""),
                     "–" if rate is None else (f"{100 * (rate / limit - 1):.0f} % above" if rate >= limit
                                               else f"{rate / limit:.2f}× the target"),
                     verdict(None if rate is None else rate >= limit)))
    return rows


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def inprocess_note(plan: dict) -> str:
    sizes = plan.get("inprocess_sizes", ())
    return f" (and {', '.join(f'{n:,}' for n in sizes)} in-process only)" if sizes else ""


def section(res: dict, plot: Path | None, report: Path) -> str:
    rec, plan = res["records"], res["plan"]
    m = res["machine"]
    blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')} "
                     f"({b.get('num_threads')} threads)" for b in m["blas"] if b.get("user_api") == "blas")
    out = [f"## `{res['name']}` run", "",
           f"- Command: `{res['command']}` ({res['elapsed_s']:.0f} s), {res['date']}, "
           f"commit {res.get('git_commit') or 'unknown'}",
           f"- Machine: {m['cores']} cores, {m['cpu']}, {m['memory_gib']} GiB; Python {m['python']}, "
           f"numpy {m['numpy']}; BLAS: {blas or 'unknown'}; BLAS env: {m['blas_env'] or 'none set'}; "
           f"server: {m['server_blas_threads']}, database {res['database']}",
           f"- Sizes: {', '.join(f'{n:,}' for n in plan['sizes'])}{inprocess_note(plan)}; many tenants: {plan['many_tenants']:,} × "
           f"{plan['many_per_tenant']:,}. The load generator shares the 2 cores with the servers.", ""]
    for note in res["skipped"]:
        out.append(f"- Skipped: {note}")
    loads = [p["loadavg_1m"] for p in res["phases"] if "loadavg_1m" in p]
    if loads:
        out.append(f"- 1-minute load average during the phases: {min(loads):.1f} to {max(loads):.1f} on "
                   f"{m['cores']} cores (above {m['cores']}, other jobs shared the machine and skew the figures)")
    out += ["", "### Targets", "", table(["target", "measured", "verdict"], [list(r) for r in targets(res)]), "",
            "### Targets of the exact quantised search", "",
            table(["target", "measured", "margin", "verdict"], [list(r) for r in exact_targets(res)]), "",
            "### Targets of ingest on the user's path", "",
            table(["target", "measured", "margin", "verdict"], [list(r) for r in ingest_targets(res)]), ""]
    if plot is not None:
        out += [f"![query p50 vs N]({plot.relative_to(report.parent).as_posix()})", ""]
    systems = [("numpy (1 thread)", "numpy", {"blas_threads": 1}), ("numpy (default)", "numpy", {"blas_threads": "default"}),
               ("index (1 BLAS thread)", "index", {"blas_threads": 1}), ("HTTP c=1", "http", {}),
               ("Chroma", "chroma", {}), ("pgvector exact", "pgvector-exact", {}), ("pgvector HNSW", "pgvector-hnsw", {})]
    rows = []
    for n in (*plan["sizes"], *plan.get("inprocess_sizes", ())):
        for k in plan["top_ks"]:
            for flt in ("none", "broad", "selective"):
                row = [f"{n:,}", k, flt]
                for _, system, extra in systems:
                    row.append(query_p50(rec, system, n, k, flt, **extra))
                rows.append(row)
    out += ["### Query latency p50 (ms), concurrency 1", "",
            table(["N", "top_k", "filter"] + [s[0] for s in systems], rows), "",
            "*index* is the service's `TenantIndex` in process, as a worker runs it: one BLAS thread, and "
            "the int8 scan of a tenant with an int8 copy cut into one part per core (`memindex/quantized.py`); "
            "*numpy* scans on one core (1 thread) or on all (default).", ""]
    rows = []
    for n in plan["sizes"]:
        for k in plan["top_ks"]:
            for flt in ("none", "broad", "selective"):
                rows.append([f"{n:,}", k, flt, query_p50(rec, "index", n, k, flt, blas_threads=1),
                             query_p50(rec, "index", n, k, flt, op="keyword", blas_threads=1),
                             query_p50(rec, "index", n, k, flt, op="hybrid", blas_threads=1)])
    built = [f"{r['n']:,}: {fmt(r['keyword_mib'], 1)} MiB" for r in find(rec, op="build_text")]
    out += ["### Keyword and hybrid query latency p50 (ms), in process, 1 BLAS thread", "",
            table(["N", "top_k", "filter", "vector", "keyword (BM25)", "hybrid (RRF)"], rows), "",
            "Texts of 8 to 40 Zipf-distributed words and an error code; queries of three words and a code "
            "(`bench/text.py`). Keyword column memory: " + (", ".join(built) or "–") + ".", ""]
    rows = []
    for r in find(rec, op="query_load"):
        rows.append([r["system"], f"{r['n']:,}", r["top_k"], r["filter"], r["concurrency"], r["qps"],
                     r["p50_ms"], r["p99_ms"]])
    out += ["### Throughput under load (closed loop)", "",
            table(["system", "N", "top_k", "filter", "clients", "QPS", "p50 ms", "p99 ms"], rows), ""]
    rows = [[r["system"], f"{r['n']:,}", r["top_k"], r["filter"], r["recall"], r.get("returned_mean", "")]
            for r in rec if "recall" in r and r.get("blas_threads", 1) == 1]
    out += ["### Recall@k against numpy's exact answer", "",
            table(["system", "N", "top_k", "filter", "recall", "mean returned"], rows), ""]
    rows = [[r["system"], f"{r['n']:,}", r.get("batch", ""), r.get("episodes_per_s"), r.get("p50_ms"), r.get("p99_ms")]
            for r in rec if r.get("op") in ("store", "ingest", "build")]
    out += ["### Writes", "", table(["system", "N", "batch", "episodes/s", "p50 ms", "p99 ms"], rows), ""]
    rows = [[f"{r['n']:,}", r["stored"], r.get("repeats", 1), r["first_ms"], r["steady_p50_ms"], r["catch_up_ms"]]
            for r in find(rec, op="catch_up")]
    out += ["### Catch-up (one-worker reader, after a writer stored episodes; medians of the repeats, "
            "stored 0: a pause with nothing stored)", "",
            table(["N", "stored", "repeats", "first query ms", "steady p50 ms", "extra ms"], rows), ""]
    rows = [[f"{r['n']:,}", r["checkpoint"], r.get("first_ms", r.get("skipped"))] for r in find(rec, op="cold_start")]
    out += ["### Cold start (first query on a new worker)", "", table(["N", "checkpoint", "first query ms"], rows), ""]
    rows = [[f"{r['n']:,}", r["raw_matrix_mib"], r["worker_rss_before_mib"], r["worker_rss_after_mib"],
             r["rss_delta_mib"], r["ratio_to_raw"], r["delta_per_100k_mib"], r["writer_worker_rss_mib"]]
            for r in find(rec, op="memory")]
    out += ["### Worker memory (VmRSS)", "",
            table(["N", "raw matrix MiB", "RSS before", "RSS after", "growth MiB", "growth/raw", "per 100k MiB",
                   "2-worker server RSS MiB"], rows), ""]
    out += tenant_tables(rec, plan["many_index_mb"])
    return "\n".join(out)


def tenant_tables(rec: list[dict], many_index_mb: int) -> list[str]:
    """The many-tenants and Zipf tables (bench/tenants.py), for RESULTS.md and results/tenants.md."""
    out: list[str] = []
    rows = []
    for r in rec:
        if r.get("op", "").startswith("many_"):
            rows.append([r["op"], f"{r['tenants']:,} × {r['per_tenant']:,}", r.get("concurrency", ""),
                         r.get("episodes_per_s", r.get("qps")), r.get("p50_ms"), r.get("p99_ms")])
    out += ["### Many tenants (random tenant per query, index budget per worker "
            f"{many_index_mb} MB)", "",
            table(["what", "tenants × episodes", "clients", "episodes/s or QPS", "p50 ms", "p99 ms"], rows), ""]
    rows = [[r["op"], f"{r['tenants']:,} × {r['per_tenant']:,}", r["clients"], r.get("qps"), r.get("p50_ms"),
             r.get("p99_ms"), r.get("ratio_to_warm", "")] for r in rec if r.get("op", "").startswith("zipf_")]
    if rows:
        first = next(r for r in rec if r.get("op", "").startswith("zipf_"))
        out += [f"### Zipf access over many tenants (s = {first['zipf_s']}, after {first['warmup_s']} s of warm-up, "
                f"index budget per worker {first['index_memory_mb']} MB; targets: ratio >= 0.8, p99 <= 30 ms)", "",
                table(["what", "tenants × episodes", "clients", "QPS", "p50 ms", "p99 ms", "QPS / one warm tenant"],
                      rows), ""]
    return out


def plot_latency(res: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rec = res["records"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, system, extra in PLOTTED:
        extra = dict(extra)
        op = extra.pop("op", "query")
        pts = sorted((r["n"], r["p50_ms"]) for r in find(rec, system=system, op=op, top_k=5, filter="none", **extra)
                     if r.get("concurrency", 1) == 1)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("episodes in the tenant (N)")
    ax.set_ylabel("query p50 latency, ms (top 5, no filter, 1 client)")
    ax.set_title(f"Query latency vs N ({res['name']} run, {res['date'][:10]})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(results_dir: Path, report: Path) -> None:
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}
    runs = {name: r for name, r in runs.items() if isinstance(r, dict) and {"plan", "records"} <= r.keys()}
    names = [n for n in ORDER if n in runs] or sorted(runs)
    parts = ["# Benchmark results", "",
             "Generated by `python -m bench.run` (`make bench`, `make bench-full`); do not edit by hand. "
             "Ratios carry over between machines better than absolute figures: every baseline ran in the "
             "same run, on the same data and queries (clustered synthetic episodes, dim 384, see `bench/data.py`). "
             "Filters: *broad* = `tags_any: [\"common\"]` (50 % of episodes), *selective* = "
             "`tags_any: [\"rare\"]` (0.1 %). HTTP batch stores are timed for a bounded time per run; the "
             "rest of a large tenant is filled through the service's `episodes_store` (no HTTP). Catch-up, "
             "memory and cold start use a second, one-worker server on the same database. Method: "
             "`bench/README.md`.", ""]
    for name in names:
        plot = plot_latency(runs[name], results_dir / f"{name}.png")
        parts.append(section(runs[name], plot, report))
    notes = HERE / "NOTES.md"  # hand-written: what was measured to choose the design, what limits it
    if notes.exists():
        parts += ["", notes.read_text().strip()]
    report.write_text("\n".join(parts) + "\n")
