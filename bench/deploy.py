"""A throw-away deployment for the HTTP benchmarks: its own database, data dir and gunicorn servers."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.support.database import drop_database, fresh_database_env, is_postgres
from tests.support.server import LiveServer

# Bulk tenant creation in one process (one Django start-up instead of two per tenant).
_CREATE_TENANTS = """
import json, sys
from tenants.services import key_issue, tenant_create
keys = {}
for slug in json.loads(sys.stdin.readline()):
    tenant = tenant_create(slug=slug, dim=DIM, metric="cosine")
    keys[slug] = key_issue(tenant=tenant, scope="admin")[1]
print(json.dumps(keys))
"""

# Bulk loading through the service's write path (episodes_store), skipping HTTP and request
# validation: used to fill large tenants once the HTTP store rate has been measured on a sample.
_PRELOAD = """
import json, sys, uuid
import numpy as np
from episodes.services import episodes_store
from tenants.models import Tenant
job = json.loads(sys.stdin.readline())
emb = np.load(job["embeddings"])
cols = job["columns"]
for slug, lo, hi in job["parts"]:
    tenant = Tenant.objects.get(slug=slug)
    for start in range(lo, hi, 1000):
        episodes = [
            {"id": uuid.UUID(cols["ids"][i]), "task_id": cols["task_id"][i], "state_embedding": emb[i],
             "reward": cols["reward"][i], "timestamp": cols["timestamp"][i], "tags": cols["tags"][i],
             "source": cols["source"][i], "user_id": cols["user_id"][i]}
            for i in range(start, min(hi, start + 1000))
        ]
        episodes_store(tenant=tenant, episodes=episodes)
print("ok")
"""

# Tenants made copies of others inside PostgreSQL (rows and change counters), for workloads of
# thousands of tenants whose data repeats a few blocks: the rows a copy gets are the ones the
# service stored for its source, so its index is built exactly as theirs, without sending each
# block through the write path again (10,000 tenants x 1,000 episodes took most of an hour).
_CLONE = """
import json, sys
from django.db import connection, transaction
from episodes.models import Episode
from tenants.models import Tenant, TenantState
pairs = json.loads(sys.stdin.readline())
ids = dict(Tenant.objects.filter(slug__in={s for pair in pairs for s in pair}).values_list("slug", "id"))
cols = ", ".join(f.column for f in Episode._meta.concrete_fields if f.column not in ("pk_id", "tenant_id"))
from_e = ", ".join("e." + c.strip() for c in cols.split(","))
ep, ts = Episode._meta.db_table, TenantState._meta.db_table
counters = ("version", "generation", "next_seq", "episode_count", "tombstone_floor")
for start in range(0, len(pairs), 250):
    src = [ids[a] for a, _ in pairs[start:start + 250]]
    dst = [ids[b] for _, b in pairs[start:start + 250]]
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(f"INSERT INTO {ep} (tenant_id, {cols}) SELECT m.dst, {from_e} FROM {ep} e "
                    f"JOIN unnest(%s::bigint[], %s::bigint[]) AS m(src, dst) ON e.tenant_id = m.src", [src, dst])
        sets = ", ".join(f"{c} = s.{c}" for c in counters)
        cur.execute(f"UPDATE {ts} d SET {sets} FROM {ts} s, unnest(%s::bigint[], %s::bigint[]) AS m(src, dst) "
                    f"WHERE d.tenant_id = m.dst AND s.tenant_id = m.src", [src, dst])
print("ok")
"""


def settle(srv: LiveServer, *, quiet: float = 0.5, timeout: float = 30) -> None:
    """Wait until no worker has used CPU for `quiet` seconds: each has finished its warm-up
    (memcloud/warmup.py), as a readiness gate lets traffic in. A worker in its warm-up does not
    accept connections, so the first requests would all queue on the other and time a start-up."""
    def cpu() -> dict[int, int]:
        ticks = {}
        for pid in srv.worker_pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
        return ticks

    deadline, last, since = time.monotonic() + timeout, cpu(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.1)
        now = cpu()
        if now != last:
            last, since = now, time.monotonic()


class Deployment:
    def __init__(self, *, index_memory_mb: int = 4096) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="bench-data-")
        # Production settings: DEBUG off (it keeps every SQL statement of a request in memory).
        self.env = {**fresh_database_env("bench"), "AGENT_MEM_DATA_DIR": self.data_dir,
                    "AGENT_MEM_INDEX_MEMORY_MB": str(index_memory_mb), "GUNICORN_LOGLEVEL": "warning",
                    "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
                    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost"}
        self.database = "postgresql" if is_postgres() else "sqlite"
        self.servers: list[LiveServer] = []
        LiveServer(env=self.env).migrate()

    def server(self, workers: int, **env: str) -> LiveServer:
        srv = LiveServer(workers=workers, env={**self.env, **env})
        self.servers.append(srv)
        srv.start(timeout=60)
        settle(srv)
        return srv

    def create_tenant(self, slug: str, dim: int) -> str:
        """One tenant through the real management commands; returns an admin-scope key."""
        return LiveServer(env=self.env).create_tenant(slug, "--dim", str(dim), "--metric", "cosine")

    def create_tenants(self, slugs: list[str], dim: int) -> dict[str, str]:
        """Many tenants in one process through the same services the commands call."""
        code = _CREATE_TENANTS.replace("DIM", str(int(dim)))
        return json.loads(self._shell(code, json.dumps(slugs) + "\n"))

    def _shell(self, code: str, stdin: str) -> str:
        import subprocess
        import sys

        from tests.support.server import ROOT

        env = LiveServer(env=self.env).env
        done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env,
                              input=stdin, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py shell failed: {done.stderr[-2000:]}")
        return done.stdout.strip().splitlines()[-1]

    def preload(self, slug: str, ds, start: int = 0, stop: int | None = None) -> None:
        """Store rows [start, stop) of ds (a bench.data.Dataset) into tenant `slug` through episodes_store."""
        self.preload_many(ds, [(slug, start, ds.n if stop is None else stop)])

    def preload_many(self, ds, parts: list[tuple[str, int, int]]) -> None:
        """Rows [lo, hi) of ds into each (slug, lo, hi), in one process."""
        parts = [p for p in parts if p[2] > p[1]]
        if not parts:
            return
        import numpy as np

        lo, hi = min(p[1] for p in parts), max(p[2] for p in parts)
        path = f"{self.data_dir}/preload.npy"
        np.save(path, ds.embeddings[lo:hi])
        columns = {"ids": ds.ids[lo:hi], "task_id": ds.task_id[lo:hi], "reward": ds.reward[lo:hi].tolist(),
                   "timestamp": ds.timestamp[lo:hi].tolist(), "tags": ds.tags[lo:hi], "source": ds.source[lo:hi],
                   "user_id": ds.user_id[lo:hi]}
        job = {"embeddings": path, "columns": columns, "parts": [(s, a - lo, b - lo) for s, a, b in parts]}
        self._shell(_PRELOAD, json.dumps(job) + "\n")

    def clone_tenants(self, pairs: list[tuple[str, str]]) -> None:
        """Each (source, copy): the copy gets the source's episodes and change counters (both exist,
        the copy empty). PostgreSQL only (the bench's database)."""
        if pairs:
            self._shell(_CLONE, json.dumps(pairs) + "\n")

    def write_images(self) -> str:
        """`manage.py indeximages --all` (no time limit of its own): every small tenant's index image,
        as a deployment has them once its tenants have been queried, or after running the command."""
        return self._shell("from django.core.management import call_command\nprint(call_command('indeximages', '--all'))",
                           "")

    def quiesce(self) -> None:
        """Flush a bulk load before timing: a PostgreSQL CHECKPOINT (the WAL of millions of copied rows
        is otherwise checkpointed during the next run) and the host's dirty pages (gigabytes of image
        copies just written), so the run times the service, not the load's write-back."""
        if self.database == "postgresql":
            import psycopg

            with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
                conn.execute("CHECKPOINT")
        os.sync()

    def close(self) -> None:
        for srv in self.servers:
            srv.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        try:
            drop_database(self.env)
        except Exception as exc:  # a failed drop must not hide why the run stopped
            print(f"[bench] could not drop the benchmark database: {exc!r}", file=sys.stderr)
