"""The fast path of EpisodeInput: store bodies validated column-wise, without DRF field objects.

PERF.md: per-episode DRF validation cost more than parsing and storing together. This module
accepts only what EpisodeInput accepts and returns exactly what it returns; whenever an item is
invalid (or merely unusual: a duplicate id, huge numbers) it answers None and the caller runs
EpisodeInput itself, which raises the error naming the field (or accepts). So every error message
comes from the serializer, and this module never has to reproduce one. Embeddings of the whole
batch are converted and checked by numpy in one go.
"""

from __future__ import annotations

import math
import re
import uuid
from itertools import chain
from typing import Any

import numpy as np
import orjson

from .fields import _JSON_NUL, MAX_INT64

MAX_METADATA_BYTES = 64 * 1024
MAX_STEPS_BYTES = 1024 * 1024
MAX_TTL_SECS = 100 * 365 * 86400
FIELDS = ("id", "task_id", "state_embedding", "reward", "metadata", "timestamp", "tags", "source", "user_id",
          "steps", "expires_at", "ttl_secs")  # EpisodeInput's order: validated_data keeps it
_ALLOWED = frozenset(FIELDS)
_SURROGATE = re.compile("[\ud800-\udfff]")
_EXACT_INT = 2.0**53  # below this every integer is exact in float64, so int -> float32 rounds once
_SAFE_SQUARED_NORM = 1e36  # far below float32's max: no partial sum of the dot product can overflow
_MISSING = object()
# name: (min, max, null allowed), as EpisodeInput declares them
_INTEGERS = {"timestamp": (0, MAX_INT64 - 1, False), "expires_at": (0, MAX_INT64 - 1, True),
             "ttl_secs": (1, MAX_TTL_SECS, True)}


def _text(value: Any, max_length: int) -> bool:
    """What StrictCharField(min 1, max_length) accepts and returns unchanged."""
    return (type(value) is str and 0 < len(value) <= max_length and "\x00" not in value
            and (value.isascii() or _SURROGATE.search(value) is None))


def _integer(value: Any, low: int, high: int) -> int | None:
    """StrictIntegerField(min_value=low, max_value=high); None when it would refuse."""
    if type(value) is float:
        if not (math.isfinite(value) and value.is_integer()):
            return None
        value = int(value)
    elif type(value) is not int:
        return None
    return value if low <= value <= high else None


def _finite_float(value: Any) -> float | None:
    """StrictFloatField: a finite number as float64 (not a boolean); None when it would refuse."""
    if type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            return None
    return value if type(value) is float and math.isfinite(value) else None


def _tags(value: Any, max_tags: int) -> list[str] | None:
    """TagsField(max_tags=max_tags): duplicates dropped, first order kept; None when it would refuse."""
    if type(value) is not list or not all(type(t) is str for t in value):
        return None
    tags = list(dict.fromkeys(value))
    if len(tags) > max_tags or not all(0 < len(t) <= 128 and "\x00" not in t for t in tags):
        return None
    return tags


def _json(value: Any, kind: type, max_bytes: int) -> bool:
    """What JSONSizedField(kind, max_bytes) accepts (and it returns the value unchanged)."""
    if type(value) is not kind:
        return False
    try:
        encoded = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return len(encoded) <= max_bytes and not (b"\\u0000" in encoded and _JSON_NUL.search(encoded))


def _small_fields(item: Any, dim: int) -> dict | None:
    """Every field but the embedding (checked only for shape here), or None if EpisodeInput must decide."""
    if type(item) is not dict or not item.keys() <= _ALLOWED:
        return None
    out: dict[str, Any] = {}
    raw_id = item.get("id", _MISSING)
    if raw_id is not _MISSING:
        if type(raw_id) is not str:
            return None
        try:
            out["id"] = uuid.UUID(raw_id)
        except ValueError:
            return None
    task_id = item.get("task_id")
    if not _text(task_id, 512):
        return None
    out["task_id"] = task_id
    embedding = item.get("state_embedding")
    if type(embedding) is not list or len(embedding) != dim:
        return None
    out["state_embedding"] = None  # filled in by fast_episodes
    reward = _finite_float(item.get("reward"))
    if reward is None:
        return None
    out["reward"] = reward
    for name, value in item.items():
        if name in out:
            continue
        if name == "metadata":
            if not _json(value, dict, MAX_METADATA_BYTES):
                return None
        elif name == "steps":
            if value is not None and not _json(value, list, MAX_STEPS_BYTES):
                return None
        elif name == "tags":
            value = _tags(value, 64)
            if value is None:
                return None
        elif name in ("source", "user_id"):
            if value is not None and not _text(value, 256):
                return None
        elif name in _INTEGERS:
            low, high, nullable = _INTEGERS[name]
            if value is not None or not nullable:
                value = _integer(value, low, high)
                if value is None:
                    return None
        out[name] = value
    if out.get("expires_at") is not None and out.get("ttl_secs") is not None:
        return None
    return {name: out[name] for name in FIELDS if name in out}


def _embeddings(rows: list[list], nonzero: bool) -> np.ndarray | None:
    """The rows as one float32 matrix, exactly as fields.embedding_array converts each, or None."""
    try:
        wide = np.asarray(rows)  # float64, or int64 when every number is an integer
    except (ValueError, TypeError, OverflowError):
        return None
    if wide.dtype not in (np.float64, np.int64) or wide.ndim != 2:  # strings, null, nested lists...
        return None
    # numpy reads true and false as 1 and 0: only rows holding a 0 or a 1 need their types checked.
    suspects = np.flatnonzero(((wide == 0) | (wide == 1)).any(axis=1))
    if suspects.size and not set(map(type, chain.from_iterable(rows[i] for i in suspects))) <= {float, int}:
        return None
    if not ((wide > -_EXACT_INT) & (wide < _EXACT_INT)).all():  # such an integer may round differently alone
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        matrix = wide.astype(np.float32)
        if not np.isfinite(matrix).all():
            return None
        if not (np.einsum("ij,ij->i", matrix, matrix) < _SAFE_SQUARED_NORM).all():
            return None
    if nonzero and not matrix.any(axis=1).all():
        return None
    return matrix


def fast_episodes(items: list, *, dim: int, nonzero: bool) -> list[dict] | None:
    """Each item as EpisodeInput(context={"tenant": t}).run_validation(item) returns it, or None
    when any item is invalid, any id repeats, or anything is unusual enough to need the serializer."""
    out, rows, seen = [], [], set()
    for item in items:
        episode = _small_fields(item, dim)
        if episode is None:
            return None
        if "id" in episode:
            if episode["id"] in seen:
                return None
            seen.add(episode["id"])
        out.append(episode)
        rows.append(item["state_embedding"])
    matrix = _embeddings(rows, nonzero) if rows else np.empty((0, dim), np.float32)
    if matrix is None:
        return None
    for episode, vector in zip(out, matrix, strict=True):
        episode["state_embedding"] = vector
    return out
