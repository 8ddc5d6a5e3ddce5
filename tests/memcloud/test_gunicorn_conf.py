"""memcloud/gunicorn.conf.py: the metrics folder it makes for a server is that server's, and goes
with it; a folder the operator gives is left alone."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def metrics_dir(server: LiveServer) -> Path:
    """The folder of the metric files a worker has mapped (workers are forked: their environment
    in /proc is the master's as it was exec'd, without the folder gunicorn.conf.py set)."""
    pid = server.worker_pids()[0]
    files = [line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
             if line.endswith(f"_{pid}.db")]
    assert files, "the worker has no metric file mapped"
    return Path(files[0]).parent


def test_a_made_metrics_folder_is_removed_when_the_server_exits(server_db_env):
    server = LiveServer(workers=1, env=server_db_env).start()
    try:
        path = metrics_dir(server)
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert path.is_dir() and any(path.iterdir())  # the worker's metric files
    finally:
        server.stop()
    assert not path.exists()


def test_a_given_metrics_folder_is_kept(server_db_env, tmp_path):
    given = tmp_path / "prom"
    server = LiveServer(workers=1, env={**server_db_env, "PROMETHEUS_MULTIPROC_DIR": str(given)}).start()
    try:
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert any(given.iterdir())
    finally:
        server.stop()
    assert given.is_dir()
