"""The schemathesis command line (`schemathesis run --checks all`) drives every /v1 operation from
/v1/openapi.json against a real server with a valid key: no 5xx, and every answer (status, content
type, body, headers) conforms to the schema (docs/api.md §4). tests/reliability/test_schema_fuzz.py
drives schemathesis from Python instead, positive and negative cases, with no key and a wrong key too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import LiveServer
from tests.support.tenants import unique_slug

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(server_db_env):
    pytest.importorskip("schemathesis", reason="schemathesis is not installed (requirements-dev.txt)")
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    with LiveServer(workers=2, env={**server_db_env, "AGENT_MEM_RATE_LIMIT": ""}) as server:
        key = server.create_tenant(unique_slug("fuzz"), "--dim", "4")
        done = subprocess.run(
            [cli, "run", f"{server.url}/v1/openapi.json", "-H", f"Authorization: Bearer {key}",
             "--max-examples", "25", "--checks", "all",
             # The embedding's length is the tenant's dim, which a schema shared by all tenants cannot state:
             # schema-valid bodies of another length are rightly refused.
             "--exclude-checks", "positive_data_acceptance",
             "--request-timeout", "30", "--generation-deterministic", "--no-color"],
            capture_output=True, text=True, timeout=540,
        )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert key not in done.stdout
