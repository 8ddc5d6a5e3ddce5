"""The fast path of QueryInput: a query body validated without DRF field objects.

Measured in process at 10k rows (0.1 % filter): QueryInput took about 0.17 ms of a 1.2 ms request,
most of it DRF's per-field machinery. As fast_input does for stores, this accepts only what
QueryInput accepts and returns exactly what it returns; on anything invalid or unusual it answers
None and the caller runs QueryInput, which words the error naming the field (or accepts).
"""

from __future__ import annotations

from typing import Any

from .fast_input import _MISSING, _embeddings, _finite_float, _integer, _tags, _text
from .fields import MAX_INT64

# QueryInput's fields in declared order (FilterInput's first): validated_data keeps it.
FIELDS = ("min_reward", "tags_any", "tags_all", "task_id_prefix", "source", "user_id", "time_after",
          "time_before", "query_embedding", "top_k", "include_embedding")
_ALLOWED = frozenset(FIELDS)
_TEXTS = {"task_id_prefix": 512, "source": 256, "user_id": 256}
MAX_FILTER_TAGS = 1000


def fast_query(data: Any, *, dim: int, nonzero: bool, max_top_k: int) -> dict | None:
    """QueryInput(data=data, context={"tenant": t}).validated_data, or None to let it decide."""
    if type(data) is not dict or not data.keys() <= _ALLOWED:
        return None
    embedding = data.get("query_embedding", _MISSING)
    if type(embedding) is not list or len(embedding) != dim:
        return None
    matrix = _embeddings([embedding], nonzero)
    if matrix is None:
        return None
    out: dict[str, Any] = {"query_embedding": matrix[0], "top_k": 5, "include_embedding": False}
    for name, value in data.items():
        if name == "query_embedding":
            continue
        if value is None and name not in ("tags_any", "tags_all", "top_k", "include_embedding"):
            out[name] = None  # allow_null
            continue
        if name == "min_reward":
            value = _finite_float(value)
        elif name in ("tags_any", "tags_all"):
            value = _tags(value, MAX_FILTER_TAGS)
        elif name in _TEXTS:
            value = value if _text(value, _TEXTS[name]) else None
        elif name in ("time_after", "time_before"):
            value = _integer(value, 0, MAX_INT64 - 1)
        elif name == "top_k":
            value = _integer(value, 1, max_top_k)
        elif type(value) is not bool:  # include_embedding: true or false only
            return None
        if value is None:
            return None
        out[name] = value
    return {name: out[name] for name in FIELDS if name in out}
