"""Where a query's time goes: `python -m bench.request_path [--n 100000]` (`make bench-limits`).

One request at a time, with one keep-alive connection (bench/http.py), against one gunicorn worker
on a throw-away database. The floors: a bare WSGI app (`bare_application` below) under gunicorn
(client, loopback TCP, gunicorn), /health (plus Django and its middleware), a prepared `SELECT 1`.
Then /v1/query over HTTP, and the same bodies through the service's WSGI application in this
process with each part timed by wrappers put around its function for this measurement only; the
difference is the HTTP hop. In process, every other request starts without the worker's memo of its
key (tenants/key_memo.py): the key looked up first against the key checked in the winners'
statement, interleaved. Results: bench/results/request_path.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import importlib
import io
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.data import make_dataset, make_queries
from bench.http import Api, query_body
from bench.procs import http_ok, stop, wait_until
from bench.stats import summarize, time_calls
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "request_path.md"
CASES = [("selective", 5), ("none", 5), ("none", 50)]

# The functions timed inside a query ("module[:class]", attribute), by label.
_PARTS = {
    "key": [("tenants.authentication", "key_with_tenant")],
    "dispatch": [("rest_framework.views:APIView", "dispatch")],
    "view": [("episodes.views:EpisodeQueryApi", "post")],
    "validation": [("episodes.serializers:QueryInput", "is_valid")],
    "index": [("memindex.index:TenantIndex", "search")],
    "winners": [("episodes.selectors", "_winners"), ("episodes.selectors", "_winners_checking_key")],
}
# Each row of the breakdown from one request's part times. DRF's answer is rendered by Django's
# handler after dispatch returns, so it falls in the first row.
ROWS: list[tuple[str, Callable[[dict[str, float]], float]]] = [
    ("Django: WSGI handler, middleware, rendering the answer", lambda p: p["total"] - p["dispatch"]),
    ("DRF: dispatch, negotiation, scope check", lambda p: p["dispatch"] - p["view"] - p["key"]),
    ("key lookup (1 round trip: key, tenant and counter; once a minute with the late check)", lambda p: p["key"]),
    ("body validation", lambda p: p["validation"]),
    ("index search", lambda p: p["index"]),
    ("winners' fields, usage and the key check (1 round trip)", lambda p: p["winners"]),
    ("rest of the view", lambda p: p["view"] - p["validation"] - p["index"] - p["winners"]),
]


def bare_application(environ, start_response):
    """The smallest WSGI app: what gunicorn and the client cost with no framework behind them."""
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def time_parts() -> Callable[[], dict[str, float]]:
    """Wrap the parts' functions; the returned function gives (and clears) each label's seconds."""
    spent: dict[str, float] = collections.defaultdict(float)

    def timed(label: str, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - began

        return wrapper

    for label, targets in _PARTS.items():
        for spec, name in targets:
            module, _, cls = spec.partition(":")
            owner = importlib.import_module(module)
            owner = getattr(owner, cls) if cls else owner
            setattr(owner, name, timed(label, getattr(owner, name)))

    def take() -> dict[str, float]:
        out = {label: spent.get(label, 0.0) for label in _PARTS}
        spent.clear()
        return out

    return take


def wsgi_caller(key: str) -> Callable[[bytes], None]:
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
           "--log-level", "warning", "bench.request_path:bare_application"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url), timeout=30, what="the bare WSGI app")
        yield url
    finally:
        stop(proc)


def p50_ms(seconds: list[float]) -> float:
    return summarize(seconds)["p50_ms"]


def p50_of_calls(fn: Callable[[int], object], count: int, seconds: float = 10) -> float:
    return p50_ms(time_calls(fn, count, warmup=50, max_seconds=seconds))


def measure(n: int, count: int) -> dict:
    from bench.deploy import Deployment
    from tests.support.server import LiveServer

    ds = make_dataset(n)
    queries = make_queries(count)
    dep = Deployment()
    try:
        key = dep.create_tenant("path", ds.embeddings.shape[1])
        dep.preload("path", ds)
        bodies = {case: [query_body(q, case[1], case[0]) for q in queries] for case in CASES}
        floors: dict[str, float] = {}
        with bare_server() as url:
            bare = Api(url, "-")
            floors["bare WSGI app on gunicorn (client, TCP, gunicorn)"] = p50_of_calls(
                lambda i: bare.status("GET", "/"), count)
        api = Api(dep.server(1).url, key)
        floors["/health (adds Django and its middleware)"] = p50_of_calls(
            lambda i: api.status("GET", "/health"), count)
        env = LiveServer(env=dep.env).env
        if dep.database == "postgresql":
            import psycopg

            with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
                floors["PostgreSQL round trip (SELECT 1, prepared)"] = p50_of_calls(
                    lambda i: conn.execute("SELECT 1", prepare=True).fetchone(), count, 5)
        http = {case: p50_of_calls(lambda i, b=b: api.post("/v1/query", b[i % len(b)]), count, 15)
                for case, b in bodies.items()}
        for srv in dep.servers:
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
    post = wsgi_caller(key)  # imports memcloud.wsgi, which sets Django and its logging up
    from tenants import key_memo
    log = open(scratch / "requests.log", "w")  # noqa: SIM115 - for the rest of this process
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log)
    take = time_parts()
    out = {}
    for case, case_bodies in bodies.items():
        for body in case_bodies[:50]:
            post(body)
        take()
        per_request: list[dict[str, float]] = []
        looked_up: list[float] = []  # the same requests with the key looked up first, interleaved
        for i in range(2 * count):
            if i % 2:
                key_memo.clear()  # the next request authenticates in full (not on the clock)
            began = time.perf_counter()
            post(case_bodies[i // 2 % len(case_bodies)])
            took = {**take(), "total": time.perf_counter() - began}
            if i % 2:
                looked_up.append(took["total"])
            else:
                per_request.append(took)
        out[case] = {"total": p50_ms([p["total"] for p in per_request]), "looked_up": p50_ms(looked_up),
                     **{label: p50_ms([row(p) for p in per_request]) for label, row in ROWS}}
    return out


def _row(label: str, values: list[float]) -> str:
    return f"| {label} | {' | '.join(f'{v:.3f}' for v in values)} |"


def report(result: dict, command: str, n: int) -> str:
    from bench.run import provenance

    http = [result["http"][c] for c in CASES]
    local = [result["in_process"][c] for c in CASES]
    header = [f"| {{}} | {' | '.join(f'{flt} top {k}' for flt, k in CASES)} |", f"|---|{'---|' * len(CASES)}"]
    lines = [
        "# Where a query's time goes", "",
        "Generated by `bench/request_path.py`; do not edit by hand. One gunicorn worker, one request at a time,",
        f"N = {n:,} episodes at dim 384 (bench/data.py; *selective* = 0.1 %) on {result['database']}. Medians in ms.",
        "", *provenance(command, f"Python {platform.python_version()}"), "",
        "| floor | p50 |", "|---|---|",
        *(_row(label, [value]) for label, value in result["floors"].items()), "",
        header[0].format("part of a `/v1/query`"), header[1],
        _row("over HTTP", http),
        _row("in process (the WSGI application called directly)", [p["total"] for p in local]),
        _row("in process, the key looked up first (no late check; interleaved)", [p["looked_up"] for p in local]),
        _row("the HTTP hop (difference)", [h - p["total"] for h, p in zip(http, local, strict=True)]),
        *(_row(f"… {label}", [p[label] for p in local]) for label, _ in ROWS), "",
        "The parts are medians of per-request times, so they need not add up to the median total exactly.", "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.request_path")
    parser.add_argument("--n", type=int, default=100_000, help="episodes in the queried tenant")
    parser.add_argument("--count", type=int, default=400, help="requests per measurement")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    text = report(measure(args.n, args.count), " ".join(["python -m bench.request_path", *sys.argv[1:]]), args.n)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
