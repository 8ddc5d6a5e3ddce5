"""Where a query's time goes: `python -m bench.request_path [--n 100000]` (`make bench-limits`).

Measured in one run, one request at a time, with the client of bench/http.py (one keep-alive
http.client connection) against one gunicorn worker on a throw-away PostgreSQL database:
  1. a bare WSGI app (bench/bare_wsgi.py) under gunicorn: the client, loopback TCP and gunicorn;
  2. the service's /health: plus Django and its middleware, no database;
  3. a PostgreSQL round trip (`SELECT 1`, prepared) from this process;
  4. /v1/query over HTTP, for the filters and top_k of the latency targets;
  5. the same request bodies through the service's WSGI application in this process (metrics and
     the request log written as in a worker), with the time of each part, taken by wrappers put
     around those functions for this measurement only.
The difference between 4 and 5 is what the HTTP hop costs a query. On PostgreSQL, 6. times the same
request bodies in process with the key checked in the winners' statement and looked up first,
interleaved. Results: bench/results/request_path.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.data import make_dataset, make_queries
from bench.http import Api, query_body
from bench.procs import free_port, http_ok, stop, wait_until
from bench.stats import time_calls

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "request_path.md"
CASES = [("selective", 5), ("none", 5), ("none", 50)]

# The functions timed inside a query (module or class, attribute), by the label used below. A
# query whose key this worker verified lately makes no key lookup: its winners' statement checks
# the key (tenants/key_memo.py).
_PARTS = {
    "key": [("tenants.authentication", "key_with_tenant")],
    "dispatch": [("rest_framework.views:APIView", "dispatch")],
    "view": [("episodes.views:EpisodeQueryApi", "post")],
    "validation": [("episodes.serializers:QueryInput", "is_valid")],
    "index": [("memindex.index:TenantIndex", "search")],
    "winners": [("episodes.selectors", "_winners"), ("episodes.selectors", "_winners_checking_key")],
}
# What each row of the breakdown is, from the per-request times of the parts above. DRF's answer is
# rendered by Django's handler once dispatch has returned, so it falls in the first row.
ROWS: list[tuple[str, Callable[[dict[str, float]], float]]] = [
    ("Django: WSGI handler, middleware, rendering the answer", lambda p: p["total"] - p["dispatch"]),
    ("DRF: dispatch, negotiation, scope check", lambda p: p["dispatch"] - p["view"] - p["key"]),
    ("key lookup (1 round trip, key, tenant and counter; none for a key the worker verified lately)",
     lambda p: p["key"]),
    ("body validation", lambda p: p["validation"]),
    ("index search", lambda p: p["index"]),
    ("winners' fields, usage and the lately verified key's check (1 round trip)", lambda p: p["winners"]),
    ("rest of the view", lambda p: p["view"] - p["validation"] - p["index"] - p["winners"]),
]


def _target(spec: str):
    import importlib

    module, _, cls = spec.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, cls) if cls else obj


class Spans:
    """Wraps the parts' functions; `take()` returns (and clears) the seconds each spent."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = collections.defaultdict(float)
        for label, targets in _PARTS.items():
            for spec, name in targets:
                owner = _target(spec)
                setattr(owner, name, self._timed(label, getattr(owner, name)))

    def _timed(self, label: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[label] += time.perf_counter() - began

        return timed

    def take(self) -> dict[str, float]:
        """Every label's seconds, 0 for a part this request did not run."""
        out = {label: self.spent.get(label, 0.0) for label in _PARTS}
        self.spent = collections.defaultdict(float)
        return out


def wsgi_caller(key: str):
    """POST a body to /v1/query through the service's WSGI application, in this process."""
    from memcloud.wsgi import application

    def post(body: bytes) -> None:
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/v1/query", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Bearer {key}", "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr, "wsgi.version": (1, 0), "wsgi.multithread": False,
            "wsgi.multiprocess": True, "wsgi.run_once": False,
        }
        status = []
        b"".join(application(environ, lambda s, headers, exc_info=None: status.append(s)))
        if not status[0].startswith("200"):
            raise RuntimeError(f"in-process query answered {status[0]}")

    return post


@contextlib.contextmanager
def bare_server():
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
           "--log-level", "warning", "bench.bare_wsgi:application"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url), timeout=30, what="the bare WSGI app")
        yield url
    finally:
        stop(proc)


def p50_ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1e3, 3)


def postgres_round_trip(database_url: str, count: int) -> list[float]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        return time_calls(lambda i: conn.execute("SELECT 1", prepare=True).fetchone(), count, warmup=20,
                          max_seconds=5)


def measure(n: int, count: int) -> dict:
    from bench.deploy import Deployment
    from tests.support.server import LiveServer

    ds = make_dataset(n)
    queries = make_queries(count)
    dep = Deployment()
    try:
        key = dep.create_tenant("path", ds.embeddings.shape[1])
        dep.preload("path", ds)
        floors: dict[str, float] = {}
        bodies = {case: [query_body(q, case[1], case[0]) for q in queries] for case in CASES}
        with bare_server() as url:
            bare = Api(url, "-")
            floors["bare WSGI app on gunicorn (client, TCP, gunicorn)"] = p50_ms(
                time_calls(lambda i: bare.status("GET", "/"), count, warmup=50, max_seconds=10))
            posted = bodies[CASES[0]]
            floors["the same, a query's body POSTed to it"] = p50_ms(
                time_calls(lambda i: bare.post("/", posted[i % len(posted)]), count, warmup=50, max_seconds=10))
        srv = dep.server(1)
        api = Api(srv.url, key)
        floors["/health (adds Django and its middleware)"] = p50_ms(
            time_calls(lambda i: api.status("GET", "/health"), count, warmup=50, max_seconds=10))
        env = LiveServer(env=dep.env).env
        if dep.database == "postgresql":
            floors["PostgreSQL round trip (SELECT 1, prepared)"] = p50_ms(
                postgres_round_trip(env["DATABASE_URL"], count))
        http = {case: p50_ms(time_calls(lambda i, b=bodies[case]: api.post("/v1/query", b[i % len(b)]), count,
                                        warmup=50, max_seconds=15))
                for case in CASES}
        srv.stop()
        return {"database": dep.database, "floors": floors, "http": http,
                "in_process": in_process(env, key, bodies, count)}
    finally:
        dep.close()


def in_process(env: dict[str, str], key: str, bodies: dict, count: int) -> dict:
    """As a worker runs: metrics in prometheus_client's multiprocess files (gunicorn.conf.py sets
    the folder) and the request log written, here to a scratch file instead of gunicorn's stderr."""
    scratch = Path(tempfile.mkdtemp(prefix="memcloud-request-path-"))
    os.environ.update({**env, "PROMETHEUS_MULTIPROC_DIR": str(scratch)})
    import logging

    post = wsgi_caller(key)  # imports memcloud.wsgi, which sets Django and its logging up
    log = open(scratch / "requests.log", "w")  # noqa: SIM115 - for the rest of this process
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log)
    spans = Spans()
    out = {}
    for case, case_bodies in bodies.items():
        for body in case_bodies[:50]:
            post(body)
        spans.take()
        per_request: list[dict[str, float]] = []
        for i in range(count):
            began = time.perf_counter()
            post(case_bodies[i % len(case_bodies)])
            per_request.append({**spans.take(), "total": time.perf_counter() - began})
        out[case] = {"total": p50_ms([p["total"] for p in per_request]),
                     **{label: p50_ms([row(p) for p in per_request]) for label, row in ROWS}}
    if env.get("DATABASE_URL", "").startswith("postgres"):  # elsewhere every key is looked up
        out["key_check"] = {case: key_check_ab(post, case_bodies, count) for case, case_bodies in bodies.items()}
    return out


def key_check_ab(post: Callable[[bytes], None], bodies: list[bytes], count: int) -> dict[str, float]:
    """The same query with its key checked in the winners' statement (a key the worker verified
    lately, tenants/key_memo.py) and looked up first (the full authentication), requests of the two
    interleaved so that the machine's drift falls on both: p50 of each and of the paired differences."""
    import tenants.api

    remembered = tenants.api.remembered_key
    times: dict[str, list[float]] = {"remembered": [], "looked up": []}
    try:
        for i in range(2 * count):
            mode = "remembered" if i % 2 else "looked up"
            tenants.api.remembered_key = remembered if i % 2 else (lambda request: None)
            began = time.perf_counter()
            post(bodies[(i // 2) % len(bodies)])
            times[mode].append(time.perf_counter() - began)
    finally:
        tenants.api.remembered_key = remembered
    saved = [a - b for a, b in zip(times["looked up"], times["remembered"], strict=True)]
    return {**{mode: p50_ms(t) for mode, t in times.items()}, "saved": p50_ms(saved)}


def _row(label: str, values: list[float]) -> str:
    return f"| {label} | {' | '.join(f'{v:.3f}' for v in values)} |"


def report(result: dict, command: str, n: int) -> str:
    from bench.run import provenance

    http = [result["http"][c] for c in CASES]
    local = [result["in_process"][c] for c in CASES]
    lines = [
        "# Where a query's time goes",
        "",
        "Generated by `bench/request_path.py`; do not edit by hand. One gunicorn worker, one request at a time,",
        f"N = {n:,} episodes at dim 384 (bench/data.py; *selective* = 0.1 %) on {result['database']}. Medians in ms.",
        "",
        *provenance(command, f"Python {platform.python_version()}"),
        "",
        "| floor | p50 |",
        "|---|---|",
        *(_row(label, [value]) for label, value in result["floors"].items()),
        "",
        f"| part of a `/v1/query` | {' | '.join(f'{flt} top {k}' for flt, k in CASES)} |",
        f"|---|{'---|' * len(CASES)}",
        _row("over HTTP", http),
        _row("in process (the WSGI application called directly)", [p["total"] for p in local]),
        _row("the HTTP hop (difference)", [h - p["total"] for h, p in zip(http, local, strict=True)]),
        *(_row(f"… {label}", [p[label] for p in local]) for label, _ in ROWS),
        "",
        "The parts are medians of per-request times, so they need not add up to the median total exactly.",
        "",
    ]
    ab = result["in_process"].get("key_check")
    if ab:
        lines += [
            "In process, the same query with its key checked in the winners' statement (a key the worker",
            "verified lately, `tenants/key_memo.py`) and looked up first, requests of the two interleaved:",
            "",
            f"| key | {' | '.join(f'{flt} top {k}' for flt, k in CASES)} |",
            f"|---|{'---|' * len(CASES)}",
            _row("looked up first (2 round trips)", [ab[c]["looked up"] for c in CASES]),
            _row("checked in the winners' statement (1 round trip)", [ab[c]["remembered"] for c in CASES]),
            _row("saved (median of paired differences)", [ab[c]["saved"] for c in CASES]),
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.request_path")
    parser.add_argument("--n", type=int, default=100_000, help="episodes in the queried tenant")
    parser.add_argument("--count", type=int, default=400, help="requests per measurement")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result = measure(args.n, args.count)
    text = report(result, " ".join(["python -m bench.request_path", *sys.argv[1:]]), args.n)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
