"""The TypeScript client (clients/typescript): its Node test runner suite against a live server,
schema-drift test included. Needs Node 20+ and `npm ci` in clients/typescript (.ci/run does both)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"


def _node_major() -> int:
    node = shutil.which("node")
    if node is None:
        return 0
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout
    return int(out.strip().lstrip("v").split(".")[0] or 0)


def test_npm_test_passes_against_a_live_server(server, make_key, limited):
    if _node_major() < 20 or shutil.which("npm") is None:
        pytest.skip("Node 20+ and npm are not installed (.ci/run installs Debian's nodejs and npm)")
    if not (PACKAGE / "node_modules" / ".bin" / "tsc").exists():
        pytest.skip("the TypeScript client's dependencies are not installed: run `npm ci` in clients/typescript")
    env = {**os.environ, "MEMCLOUD_URL": server.url, "MEMCLOUD_API_KEY": make_key(), "MEMCLOUD_DIM": "8",
           "MEMCLOUD_LIMITED_URL": limited.url, "MEMCLOUD_LIMITED_API_KEY": limited.make_key(rate_limit=2)}
    done = subprocess.run(["npm", "test"], cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    print(done.stdout[-1200:])
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "# fail 0" in done.stdout and "# pass" in done.stdout
