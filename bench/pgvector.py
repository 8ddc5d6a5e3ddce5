"""pgvector (bundled in PyPI `pgserver`): exact scan and HNSW, on the same data and queries."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable

import numpy as np

from bench.data import FILTERS, Dataset
from bench.load import closed_loop
from bench.stats import query_cell

DDL = """
DROP TABLE IF EXISTS items;
CREATE TABLE items (id uuid, embedding vector({dim}), tags text[], reward float8, ts bigint,
                    source text, user_id text, task_id text);
"""


def available() -> bool:
    try:
        import pgserver  # noqa: F401
        import pgvector.psycopg  # noqa: F401
    except ImportError:
        return False
    return True


def sql_for(flt: str, k: int) -> str:
    spec = FILTERS[flt]
    where = "WHERE tags && %(tags)s::text[]" if spec else ""
    return f"SELECT id::text FROM items {where} ORDER BY embedding <=> %(q)s LIMIT {k}"


def params_for(flt: str, q: np.ndarray) -> dict:
    spec = FILTERS[flt]
    return {"q": q, "tags": spec["tags_any"]} if spec else {"q": q}


class PgvectorServer:
    def __init__(self) -> None:
        import pgserver

        self.dir = tempfile.mkdtemp(prefix="bench-pgvector-")
        self.server = pgserver.get_server(self.dir, cleanup_mode="delete")
        self.uri = self.server.get_uri()

    def connect(self):
        import psycopg
        from pgvector.psycopg import register_vector

        conn = psycopg.connect(self.uri, autocommit=True)
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        return conn

    def stop(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


def ingest(conn, ds: Dataset) -> float:
    """Binary COPY of every row; returns rows/s."""
    conn.execute(DDL.format(dim=ds.dim))
    t = time.perf_counter()
    with conn.cursor().copy(
        "COPY items (id, embedding, tags, reward, ts, source, user_id, task_id) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["uuid", "vector", "text[]", "float8", "int8", "text", "text", "text"])
        for i in range(ds.n):
            copy.write_row((uuid.UUID(ds.ids[i]), ds.embeddings[i], ds.tags[i], float(ds.reward[i]), int(ds.timestamp[i]),
                            ds.source[i], ds.user_id[i], ds.task_id[i]))
    conn.execute("ANALYZE items")
    return ds.n / (time.perf_counter() - t)


def sender(server: PgvectorServer, sql: str, flt: str, queries: np.ndarray, k: int) -> Callable[[int], list[str]]:
    conn = server.connect()
    # pgvector's default ef_search (40) caps what one scan can return; its docs ask for ef_search >= LIMIT.
    conn.execute(f"SET hnsw.ef_search = {max(40, k)}")

    def send(i: int) -> list[str]:
        return [r[0] for r in conn.execute(sql, params_for(flt, queries[i % len(queries)])).fetchall()]

    return send


def _queries(server, method: str, ds, queries, *, top_ks, count, concurrencies, seconds, truth) -> list[dict]:
    out = []
    for flt in FILTERS:
        for k in top_ks:
            sql = sql_for(flt, k)
            send = sender(server, sql, flt, queries, k)
            out.append({"system": f"pgvector-{method}", "op": "query", "n": ds.n, "top_k": k, "filter": flt,
                        **query_cell(send, truth[(k, flt)], count)})
            if flt == "none" and k == top_ks[0]:
                for c in concurrencies:
                    load = closed_loop(lambda s=sql, f=flt, k=k: sender(server, s, f, queries, k), concurrency=c,
                                       seconds=seconds, max_requests=100_000)
                    out.append({"system": f"pgvector-{method}", "op": "query_load", "n": ds.n, "top_k": k,
                                "filter": flt, **load})
    return out


def bench_pgvector(ds: Dataset, queries: np.ndarray, *, top_ks: tuple[int, ...], count: int,
                   concurrencies: tuple[int, ...], seconds: float, hnsw: bool,
                   truth: dict[tuple[int, str], list[list[str]]]) -> list[dict]:
    """Exact (sequential scan) first, then build HNSW (cosine, default m/ef) and query again."""
    server = PgvectorServer()
    try:
        conn = server.connect()
        rate = ingest(conn, ds)
        out: list[dict] = [{"system": "pgvector", "op": "ingest", "n": ds.n, "episodes_per_s": round(rate, 1)}]
        exact_count = max(5, count // 4)  # a full scan per query: keep the count small
        out += _queries(server, "exact", ds, queries, top_ks=top_ks, count=exact_count, concurrencies=(),
                        seconds=seconds, truth=truth)
        if hnsw:
            conn.execute("SET maintenance_work_mem = '2GB'")
            t = time.perf_counter()
            conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)")
            out.append({"system": "pgvector-hnsw", "op": "build", "n": ds.n,
                        "seconds": round(time.perf_counter() - t, 2)})
            out += _queries(server, "hnsw", ds, queries, top_ks=top_ks, count=count, concurrencies=concurrencies,
                            seconds=seconds, truth=truth)
        conn.close()
        return out
    finally:
        server.stop()
