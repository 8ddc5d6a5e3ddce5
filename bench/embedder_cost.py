"""What a loaded in-process embedder costs a worker (not a test): resident memory before and after
loading the `local-minilm` model and after embedding a batch, and the embedding rate.

    .venv/bin/python bench/embedder_cost.py [--spec local-minilm] [--batch 64] [--rounds 20]

Each figure is the process's RSS from /proc/self/status (VmRSS), after Django is set up and the
project's request path imported (what a gunicorn worker holds before its first request). JSON on stdout;
docs/design.md (Embedders) records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# The project root instead of bench/ first: bench/http.py would shadow the standard library's http.
sys.path[0] = str(Path(__file__).resolve().parents[1])
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memcloud.settings")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="local-minilm")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    import django

    django.setup()
    import memcloud.urls  # noqa: F401  the whole request path, as a worker has it
    from embedders import embedder_for

    out: dict[str, object] = {"spec": args.spec, "cpus": os.cpu_count(), "rss_mb_before": round(rss_mb(), 1)}
    embedder = embedder_for(args.spec)
    started = time.perf_counter()
    embedder.embed(["load"])
    out["load_secs"] = round(time.perf_counter() - started, 2)
    out["rss_mb_loaded"] = round(rss_mb(), 1)
    texts = [f"note {i}: the user prefers short answers about topic {i % 13}" for i in range(args.batch)]
    embedder.embed(texts)  # warm
    started = time.perf_counter()
    for _ in range(args.rounds):
        embedder.embed(texts)
    elapsed = time.perf_counter() - started
    out["rss_mb_after_batches"] = round(rss_mb(), 1)
    out["batch"] = args.batch
    out["texts_per_sec"] = round(args.batch * args.rounds / elapsed, 1)
    out["ms_per_batch"] = round(1000 * elapsed / args.rounds, 1)
    import torch

    out["torch_threads"] = torch.get_num_threads()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
