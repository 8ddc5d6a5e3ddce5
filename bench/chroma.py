"""Chroma's server (`chroma run`, HNSW) on the same data and queries, over its REST API."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from bench.data import FILTERS, Dataset
from bench.load import closed_loop
from bench.procs import http_ok, stop, wait_until
from bench.stats import query_cell
from tests.support.server import free_port

COLLECTION_PATH = "/api/v2/tenants/default_tenant/databases/default_database/collections/{id}/query"


def available() -> bool:
    try:
        import chromadb  # noqa: F401
    except ImportError:
        return False
    return shutil.which("chroma", path=str(Path(sys.executable).parent)) is not None


def chroma_where(flt: str) -> dict | None:
    """Our filters in Chroma's `where` language (tags stored as a string-array metadata field)."""
    spec = FILTERS[flt]
    if not spec:
        return None
    (tag,) = spec["tags_any"]
    return {"tags": {"$contains": tag}}


class ChromaServer:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-chroma-")
        self.port = free_port()
        exe = str(Path(sys.executable).parent / "chroma")
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        self.log = open(Path(self.dir) / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [exe, "run", "--path", str(Path(self.dir) / "data"), "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_until(lambda: http_ok(f"http://127.0.0.1:{self.port}/api/v2/heartbeat"), timeout=60, what="chroma")

    def client(self):
        import chromadb
        from chromadb.config import Settings

        return chromadb.HttpClient(host="127.0.0.1", port=self.port, settings=Settings(anonymized_telemetry=False))

    def stop(self) -> None:
        stop(self.proc)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def ingest(server: ChromaServer, ds: Dataset, name: str, batch: int = 5000):
    """Create a cosine collection and add ds in batches; returns (collection, episodes/s)."""
    client = server.client()
    col = client.create_collection(name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}})
    batch = min(batch, client.get_max_batch_size())
    t = time.perf_counter()
    for start in range(0, ds.n, batch):
        stop_ = min(ds.n, start + batch)
        col.add(
            ids=ds.ids[start:stop_],
            embeddings=ds.embeddings[start:stop_],
            metadatas=[
                {"tags": ds.tags[i], "reward": float(ds.reward[i]), "timestamp": int(ds.timestamp[i]),
                 "source": ds.source[i], "user_id": ds.user_id[i], "task_id": ds.task_id[i]}
                for i in range(start, stop_)
            ],
        )
    return col, ds.n / (time.perf_counter() - t)


def query_bodies(queries: np.ndarray, k: int, flt: str) -> list[bytes]:
    where = chroma_where(flt)
    bodies = []
    for q in queries:
        body: dict = {"query_embeddings": [q], "n_results": k, "include": ["distances"]}
        if where:
            body["where"] = where
        bodies.append(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))
    return bodies


def rest_sender(port: int, path: str, bodies: list[bytes]) -> Callable[[int], list[str]]:
    """A request function on its own keep-alive connection; returns the ids of the first result list."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}

    def send(i: int) -> list[str]:
        conn.request("POST", path, bodies[i % len(bodies)], headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"chroma query answered {resp.status}: {data[:200]!r}")
        return orjson.loads(data)["ids"][0]

    return send


def bench_chroma(ds: Dataset, queries: np.ndarray, *, top_ks: tuple[int, ...], count: int,
                 concurrencies: tuple[int, ...], seconds: float,
                 truth: dict[tuple[int, str], list[list[str]]]) -> list[dict]:
    server = ChromaServer()
    try:
        col, rate = ingest(server, ds, f"bench-{ds.n}")
        out: list[dict] = [{"system": "chroma", "op": "ingest", "n": ds.n, "episodes_per_s": round(rate, 1)}]
        path = COLLECTION_PATH.format(id=col.id)
        for flt in FILTERS:
            for k in top_ks:
                bodies = query_bodies(queries, k, flt)
                send = rest_sender(server.port, path, bodies)
                out.append({"system": "chroma", "op": "query", "n": ds.n, "top_k": k, "filter": flt,
                            **query_cell(send, truth[(k, flt)], count)})
                # Filtered queries scan in Chroma (hundreds of ms at 100k): latency only, load on the rest.
                for c in concurrencies if flt == "none" else ():
                    load = closed_loop(lambda b=bodies: rest_sender(server.port, path, b), concurrency=c,
                                       seconds=seconds, max_requests=100_000)
                    out.append({"system": "chroma", "op": "query_load", "n": ds.n, "top_k": k, "filter": flt, **load})
        return out
    finally:
        server.stop()
