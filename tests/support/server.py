"""A real gunicorn serving the project on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """gunicorn with N workers. `env` adds to (or, with "", removes from) the inherited environment."""

    def __init__(self, *, workers: int = 2, env: dict[str, str] | None = None, port: int | None = None):
        self.workers = workers
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkdtemp(prefix="memcloud-server-")) / "server.log"
        # Kept while the tests that started it may still read it, gone with the test process.
        atexit.register(shutil.rmtree, self.log_path.parent, True)
        self.env = self._environment(env or {})
        self.process: subprocess.Popen | None = None

    @staticmethod
    def _environment(extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_SETTINGS"))}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update({"DJANGO_SETTINGS_MODULE": "memcloud.settings", "PYTHONUNBUFFERED": "1"})
        for key, value in extra.items():
            if value == "":
                env.pop(key, None)
            else:
                env[key] = value
        return env

    # ----- management commands against the same database -----
    def manage(self, *args: str, check: bool = True) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout.strip()

    def migrate(self) -> None:
        self.manage("migrate", "--noinput", "-v0")

    def create_tenant(self, slug: str, *opts: str, scope: str = "admin") -> str:
        """Create a tenant and return a fresh key of `scope` for it."""
        self.manage("createtenant", slug, *opts)
        return self.manage("issuekey", slug, "--scope", scope)

    def create_tenants(self, specs: list[tuple[str, tuple[str, ...], str]]) -> list[str]:
        """Like `create_tenant` for many (slug, opts, scope) at once: the same commands, run by
        call_command in one manage.py process, since each process start costs about a second."""
        script = (
            "import io, json, sys\n"
            "from django.core.management import call_command\n"
            "keys = []\n"
            "for slug, opts, scope in json.loads(sys.stdin.read()):\n"
            "    call_command('createtenant', slug, *opts, stdout=io.StringIO())\n"
            "    keys.append(call_command('issuekey', slug, '--scope', scope, stdout=io.StringIO()))\n"
            "print(json.dumps(keys))\n"
        )
        done = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=self.env,
                              input=json.dumps(specs), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"creating tenants failed: {done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    # ----- lifecycle -----
    def start(self, timeout: float = 30) -> LiveServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - stays open for the server's life
        cmd = [sys.executable, "-m", "gunicorn", "-c", "memcloud/gunicorn.conf.py", "--bind",
               f"127.0.0.1:{self.port}", "--workers", str(self.workers), "memcloud.wsgi"]
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200 and self._all_workers_up():
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer in {timeout}s: {self.log()[-3000:]}")

    def _all_workers_up(self) -> bool:
        return len(self.worker_pids()) >= self.workers

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill_all()

    def kill_all(self) -> None:
        """SIGKILL the master and every worker at once, as a crash would."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def restart(self) -> LiveServer:
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
