"""Where a LangGraph item lives in Memcloud: its episode's `task_id` and id.

A namespace is a tuple of labels. Each label is escaped (`%` -> `%25`, `/` -> `%2F`) and written
after a `/`; the key follows after `//`. So the text of a namespace prefix, `root/l1/l2/`, is a
prefix of exactly the items in that namespace and below it: labels are never empty, so `/` after a
label's `/` can only start the key, and `acme/` is no prefix of `acme-corp/`. The server's
`task_id_prefix` compares characters literally (no `%`, `_` or `*` wildcards), on every database.
The episode id is a uuid5 of the task_id: get, put and delete need no lookup.
"""

from __future__ import annotations

import uuid

MAX_TASK_ID = 512  # the server's limit (docs/api.md §3)
_ID_SPACE = uuid.UUID("7d0c2a8e-4b8f-5a51-9c6e-2f1d3f0b6a10")


def escape(label: str) -> str:
    return label.replace("%", "%25").replace("/", "%2F")


def prefix_text(root: str, namespace: tuple[str, ...]) -> str:
    """The task_id prefix of every item in `namespace` or below it."""
    return "".join(f"{escape(label)}/" for label in (root, *namespace))


def task_id(root: str, namespace: tuple[str, ...], key: str) -> str:
    text = f"{prefix_text(root, namespace)}/{key}"
    if len(text) > MAX_TASK_ID:
        raise ValueError(f"namespace and key too long: {len(text)} characters once encoded, at most "
                         f"{MAX_TASK_ID} (namespace {namespace!r}, key {key[:40]!r})")
    return text


def episode_id(root: str, namespace: tuple[str, ...], key: str) -> str:
    return str(uuid.uuid5(_ID_SPACE, task_id(root, namespace, key)))
