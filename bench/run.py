"""`python -m bench.run --quick|--full|--smoke`: run the benchmarks, write results JSON, RESULTS.md, a plot."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DIM = 384


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    queries: int = 200  # distinct query vectors, cycled
    recall_queries: int = 50  # checked against numpy's exact answer
    count: int = 100  # timed calls per in-process cell
    top_ks: tuple[int, ...] = (5, 50)
    concurrencies: tuple[int, ...] = (1, 4, 16)
    seconds: float = 1.5  # per HTTP load cell
    max_requests: int = 5000  # per HTTP load cell
    peer_seconds: float = 1.5
    workers: int = 2
    store_count: int = 200  # single stores; batch-100 stores 10x as many
    store_seconds: float = 20  # HTTP batch stores per measurement, then the service path fills the rest
    catchup_sizes: tuple[int, ...] = (1, 100, 10_000)
    many_tenants: int = 100
    many_per_tenant: int = 1000
    many_index_mb: int = 1024
    # Zipf-distributed access over many tenants (bench/tenants.py bench_zipf_tenants); 0: skipped.
    # At the target's scale in every plan but the smoke: 10,000 tenants within the default budget
    # (1024 MB a worker). Their load and images take about 13 minutes of the run.
    zipf_tenants: int = 10_000
    zipf_index_mb: int = 1024
    zipf_per_tenant: int = 1000
    zipf_blocks: int = 20
    zipf_clients: int = 4
    zipf_s: float = 1.1
    zipf_warmup_s: float = 60.0
    zipf_seconds: float = 10.0
    pgvector_hnsw_max_n: int = 100_000  # HNSW builds take minutes above this on 2 cores
    # Sizes measured in-process only (numpy and the index, 1 BLAS thread as in a worker), `count` calls a cell.
    inprocess_sizes: tuple[int, ...] = ()
    inprocess_count: int = 20


PLANS = {
    "smoke": Plan(sizes=(1000,), queries=40, recall_queries=20, count=20, concurrencies=(1, 4), seconds=0.4,
                  max_requests=200, peer_seconds=0.4, store_count=20, store_seconds=2, catchup_sizes=(1, 100), many_tenants=5,
                  many_per_tenant=100, zipf_tenants=20, zipf_per_tenant=100, zipf_blocks=4, zipf_warmup_s=0.5,
                  zipf_seconds=0.5, zipf_index_mb=1),
    "quick": Plan(sizes=(10_000, 100_000), recall_queries=30, inprocess_sizes=(1_000_000,)),
    "full": Plan(sizes=(10_000, 100_000, 1_000_000), seconds=3.0, max_requests=20_000, peer_seconds=3.0, store_seconds=60,
                 many_tenants=1000, pgvector_hnsw_max_n=1_000_000),
}


def machine() -> dict:
    from threadpoolctl import threadpool_info

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem_kib = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                   if ln.startswith("MemTotal:"))
    return {
        "cores": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(), "numpy": np.__version__,
        "blas": [{**pool, "filepath": Path(pool.get("filepath", "")).name} for pool in threadpool_info()],
        "blas_env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))},
        "server_blas_threads": "1 per worker (memcloud/gunicorn.conf.py)",
    }


def git_commit() -> str | None:
    import subprocess

    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10)
        # Changes to the measured code (not to documents or earlier results) make the commit alone
        # the wrong label.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!*.md",
                                ":!bench/results"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return None
    commit = done.stdout.strip()
    if not commit:
        return None
    return f"{commit} with uncommitted changes" if dirty else commit


def provenance(command: str, software: str) -> list[str]:
    """The Command and Machine lines that request_path.md and profile.md open with."""
    m = machine()
    return [f"- Command: `{command}`, {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}, commit {git_commit()}",
            f"- Machine: {m['cores']} cores, {m['cpu']}; {software}; 1-minute load average {os.getloadavg()[0]:.1f}"]


class Runner:
    def __init__(self, plan: Plan, *, chroma: bool, pgvector: bool, http: bool) -> None:
        self.plan = plan
        self.records: list[dict] = []
        self.phases: list[dict] = []
        self.skipped: list[str] = []
        self.use_chroma, self.use_pgvector, self.use_http = chroma, pgvector, http

    def phase(self, name: str, fn, *args, **kwargs) -> None:
        """Run one measurement; a failing peer is recorded, not fatal (our own parts must work)."""
        print(f"[bench] {name} ...", flush=True)
        t = time.perf_counter()
        try:
            self.records += fn(*args, **kwargs)
            ok = True
        except Exception as exc:
            if not name.startswith(("chroma", "pgvector")):
                raise
            traceback.print_exc()
            self.skipped.append(f"{name}: failed: {exc!r}"[:300])
            ok = False
        elapsed = time.perf_counter() - t
        # The 1-minute load average tells a reader how busy the machine was (other jobs skew figures).
        self.phases.append({"phase": name, "seconds": round(elapsed, 1), "ok": ok,
                            "loadavg_1m": round(os.getloadavg()[0], 2)})
        print(f"[bench] {name} done in {elapsed:.1f} s", flush=True)

    def run(self) -> None:
        from bench import baselines, chroma, pgvector, text
        from bench.data import FILTERS, make_dataset, make_queries

        p = self.plan
        if self.use_chroma and not chroma.available():
            self.use_chroma = False
            self.skipped.append("chroma: not installed (pip install -r bench/requirements.txt)")
        if self.use_pgvector and not pgvector.available():
            self.use_pgvector = False
            self.skipped.append("pgvector: pgserver/pgvector not installed (pip install -r bench/requirements.txt)")
        dep = None
        if self.use_http:
            from bench.deploy import Deployment

            dep = Deployment(index_memory_mb=8192)
        try:
            queries = make_queries(p.queries, dim=DIM)

            def exact(ds) -> dict:  # numpy's exact ids, the ground truth of every recall figure
                return {(k, f): baselines.exact_ids(ds, queries[: p.recall_queries], k, f)
                        for k in p.top_ks for f in FILTERS}

            for n in p.sizes:
                ds = make_dataset(n, dim=DIM)
                truth = exact(ds)
                for threads in (None, 1):
                    self.phase(f"numpy n={n} blas={threads or 'default'}", baselines.bench_numpy, ds, queries,
                               top_ks=p.top_ks, count=p.count, threads=threads)
                    self.phase(f"index n={n} blas={threads or 'default'}", baselines.bench_index, ds, queries,
                               top_ks=p.top_ks, count=p.count, threads=threads, truth=truth)
                self.phase(f"keyword and hybrid n={n}", text.bench_text, ds, queries, top_ks=p.top_ks, count=p.count)
                if dep is not None:
                    from bench.http import bench_http
                    from bench.ingest import bench_ingest

                    self.phase(f"ingest n={n}", bench_ingest, dep, ds, workers=p.workers)

                    self.phase(f"http n={n}", bench_http, dep, ds, queries, top_ks=p.top_ks,
                               concurrencies=p.concurrencies, seconds=p.seconds, max_requests=p.max_requests,
                               workers=p.workers, store_count=p.store_count, store_seconds=p.store_seconds,
                               catchup_sizes=p.catchup_sizes,
                               truth=truth)
                if self.use_chroma:
                    self.phase(f"chroma n={n}", chroma.bench_chroma, ds, queries, top_ks=p.top_ks,
                               count=p.count, concurrencies=p.concurrencies, seconds=p.peer_seconds, truth=truth)
                if self.use_pgvector:
                    self.phase(f"pgvector n={n}", pgvector.bench_pgvector, ds, queries, top_ks=p.top_ks,
                               count=p.count, concurrencies=p.concurrencies, seconds=p.peer_seconds,
                               hnsw=n <= p.pgvector_hnsw_max_n, truth=truth)
                del ds
            for n in p.inprocess_sizes:
                ds = make_dataset(n, dim=DIM)
                truth = exact(ds)
                self.phase(f"numpy n={n} blas=1", baselines.bench_numpy, ds, queries, top_ks=p.top_ks,
                           count=p.inprocess_count, threads=1)
                self.phase(f"index n={n} blas=1", baselines.bench_index, ds, queries, top_ks=p.top_ks,
                           count=p.inprocess_count, threads=1, truth=truth)
                del ds, truth
            if dep is not None:
                from bench.tenants import bench_many_tenants

                self.phase("many tenants", bench_many_tenants, dep, tenants=p.many_tenants,
                           per_tenant=p.many_per_tenant, workers=p.workers, seconds=p.seconds,
                           store_seconds=p.store_seconds,
                           concurrencies=p.concurrencies[:2], dim=DIM, index_memory_mb=p.many_index_mb)
                if p.zipf_tenants:
                    from bench.tenants import bench_zipf_tenants

                    self.phase("zipf tenants", bench_zipf_tenants, dep, tenants=p.zipf_tenants,
                               per_tenant=p.zipf_per_tenant, blocks=p.zipf_blocks, workers=p.workers,
                               clients=p.zipf_clients, s=p.zipf_s, warmup_s=p.zipf_warmup_s,
                               seconds=p.zipf_seconds, dim=DIM, index_memory_mb=p.zipf_index_mb)
        finally:
            if dep is not None:
                dep.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    for name in PLANS:
        mode.add_argument(f"--{name}", dest="mode", action="store_const", const=name)
    parser.add_argument("--name", help="results name (default: the mode)")
    parser.add_argument("--sizes", help="comma list of N overriding the mode's")
    parser.add_argument("--results-dir", type=Path, default=HERE / "results")
    parser.add_argument("--report", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--no-chroma", action="store_true")
    parser.add_argument("--no-pgvector", action="store_true")
    parser.add_argument("--no-http", action="store_true", help="in-process and peers only")
    args = parser.parse_args(argv)
    plan = PLANS[args.mode]
    if args.sizes:
        plan = replace(plan, sizes=tuple(int(s) for s in args.sizes.split(",")))
    name = args.name or args.mode
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memcloud.settings")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    # Stopping a run (SIGTERM, or SIGINT even when started in the background) still stops its
    # servers and drops its database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = dt.datetime.now(dt.UTC)
    t = time.perf_counter()
    runner = Runner(plan, chroma=not args.no_chroma, pgvector=not args.no_pgvector, http=not args.no_http)
    runner.run()
    result = {
        "name": name,
        "command": "python -m bench.run " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "date": started.isoformat(timespec="seconds"),
        "elapsed_s": round(time.perf_counter() - t, 1),
        "git_commit": git_commit(),
        "machine": machine(),
        "database": "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite",
        "plan": asdict(plan),
        "phases": runner.phases,
        "skipped": runner.skipped,
        "records": runner.records,
    }
    from bench.report import write_outputs

    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    write_outputs(args.results_dir, args.report)
    print(f"[bench] wrote {path} and {args.report} in {result['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
