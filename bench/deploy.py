"""A throw-away deployment for the HTTP benchmarks: its own database, data dir and gunicorn servers."""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile

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
        return srv.start(timeout=60)

    def create_tenant(self, slug: str, dim: int) -> str:
        """One tenant through the real management commands; returns an admin-scope key."""
        return LiveServer(env=self.env).create_tenant(slug, "--dim", str(dim), "--metric", "cosine")

    def create_tenants(self, slugs: list[str], dim: int) -> dict[str, str]:
        """Many tenants in one process through the same services the commands call."""
        import subprocess
        import sys

        from tests.support.server import ROOT

        code = _CREATE_TENANTS.replace("DIM", str(int(dim)))
        env = LiveServer(env=self.env).env
        done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env,
                              input=json.dumps(slugs) + "\n", capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"tenant creation failed: {done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def close(self) -> None:
        for srv in self.servers:
            srv.stop()
        drop_database(self.env)
        shutil.rmtree(self.data_dir, ignore_errors=True)
