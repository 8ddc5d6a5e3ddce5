"""Profile the service's hot paths under load with py-spy: `python -m bench.profile [--n 100000]`.

Starts a one-worker gunicorn on a throw-away database, drives one operation at a time (query with no
filter and with the 0.1 % filter, single store, batch store) from a client thread while `py-spy
record` samples the worker, and prints the functions with the most samples (own time and inclusive)
per operation, also written to `results/profile.md` (`--report`). Collapsed stacks are kept in a
temporary directory (printed; `--out` to choose) for flame graphs.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

from bench.data import make_dataset, make_queries, slice_dataset
from bench.http import NUMPY, Api, batches, query_body


def py_spy() -> str:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        raise SystemExit("py-spy is not installed: pip install -r bench/requirements.txt")
    return exe


def record(pid: int, seconds: float, out: Path, drive, *, native: bool = False) -> int:
    """Sample pid for `seconds` while `drive(stop_event)` runs in a thread; returns requests sent.
    `native`: C frames too (numpy's loops, simsimd's kernels), sampled with the process stopped."""
    cmd = [py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
           "--format", "raw", "--output", str(out), *(["--native"] if native else ["--nonblocking"])]
    stop = threading.Event()
    sent = [0]

    def loop() -> None:
        while not stop.is_set():
            drive(sent[0])
            sent[0] += 1

    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    spy.wait(seconds + 60)
    stop.set()
    worker.join(120)
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed: {spy.stderr.read().decode()[-1000:]}")
    return sent[0]


def summarize_stacks(path: Path, top: int) -> str:
    """Top functions by own samples and by inclusive samples, from py-spy's collapsed output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        if not any("handle_request" in f for f in frames):
            continue  # idle: the worker waiting in accept/select
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            if f.split("(")[-1].startswith(PROJECT):
                incl[f] += n
    lines = [f"busy samples: {total}", "  own time (innermost frame):"]
    lines += [f"    {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    lines.append("  inclusive, project code:")
    lines += [f"    {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(top * 2)]
    return "\n".join(lines)


PROJECT = ("episodes/", "tenants/", "ops/", "memcloud/")


def _frame(raw: str) -> str:
    """'func (path/to/file.py:12)' -> 'func (dir/file.py)' keeping the last two path parts."""
    if " (" not in raw:
        return raw
    func, _, where = raw.partition(" (")
    file = where.rsplit(":", 1)[0]
    return f"{func} ({'/'.join(file.split('/')[-2:])})"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--n", type=int, default=100_000, help="episodes in the queried tenant")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None, help="where the collapsed stacks go")
    parser.add_argument("--native", action="store_true", help="sample C frames too (slows the worker)")
    parser.add_argument("--report", type=Path, default=Path(__file__).parent / "results" / "profile.md")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memcloud.settings")
    from bench.deploy import Deployment

    args.out = args.out or Path(tempfile.mkdtemp(prefix="memcloud-profile-"))
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"collapsed stacks in {args.out}")
    sections: list[str] = []

    def show(text: str) -> None:
        print(text, flush=True)
        sections.append(text)

    dep = Deployment()
    try:
        keys = {s: dep.create_tenant(s, 384) for s in ("query", "store")}
        srv = dep.server(1)
        (pid,) = srv.worker_pids()
        ds = make_dataset(args.n)
        api = Api(srv.url, keys["query"])
        for body in batches(ds, 1000):
            api.post("/v1/episodes/batch", body)
        vectors = make_queries(64)
        queries = [query_body(q, 5, "none") for q in vectors]
        selective = [query_body(q, 5, "selective") for q in vectors]
        api.post("/v1/query", queries[0])  # build the index before sampling
        extra = make_dataset(200_000, seed=99)
        store = Api(srv.url, keys["store"])
        singles = (orjson.dumps(extra.episode(i), option=NUMPY) for i in range(extra.n))
        batch_bodies = batches(slice_dataset(extra, 50_000, extra.n), 1000)
        cases = {
            "query": lambda i: api.post("/v1/query", queries[i % len(queries)]),
            "query_selective": lambda i: api.post("/v1/query", selective[i % len(selective)]),
            "store_single": lambda i: store.post("/v1/episodes", next(singles)),
            "store_batch_1000": lambda i: store.post("/v1/episodes/batch", next(batch_bodies)),
        }
        for name, drive in cases.items():
            path = args.out / f"{name}.txt"
            sent = record(pid, args.seconds, path, drive, native=args.native)
            show(f"== {name}: {sent} requests in ~{args.seconds:.0f} s (N={args.n:,} for query)")
            show(summarize_stacks(path, args.top))
        # Cold start: a new worker's first query builds the tenant's index from the database.
        fresh = dep.server(1)
        (fresh_pid,) = fresh.worker_pids()
        Api(fresh.url, keys["store"]).post("/v1/query", queries[0])  # imports, side tenant
        cold = Api(fresh.url, keys["query"])

        def once(i: int) -> None:
            if i == 0:
                t = time.perf_counter()
                cold.post("/v1/query", queries[1])
                show(f"== cold_start: first query {1e3 * (time.perf_counter() - t):.0f} ms (N={args.n:,})")
            else:
                time.sleep(0.05)

        path = args.out / "cold_start.txt"
        record(fresh_pid, max(args.seconds, 20), path, once, native=args.native)
        show(summarize_stacks(path, args.top))
    finally:
        dep.close()
    args.report.write_text(report(sections, " ".join(["python -m bench.profile", *sys.argv[1:]])))
    print(f"wrote {args.report}")
    return 0


def report(sections: list[str], command: str) -> str:
    from bench.run import provenance

    return "\n".join([
        "# Where a worker's time goes, by operation", "",
        "Generated by `bench/profile.py` (`make bench-profile`); do not edit by hand. py-spy samples of one",
        "gunicorn worker while a client thread sends one operation after another (queries top 5; *selective*",
        "= the 0.1 % filter): the share of busy samples in each function, its own time and inclusive.", "",
        *provenance(command, f"Python {platform.python_version()}"), "",
        "```", *sections, "```", ""])


if __name__ == "__main__":
    raise SystemExit(main())
