"""Every endpoint, written once for both clients.

Each function is a plan: a generator that yields the `Call`s to make, is sent each decoded 2xx
answer (or thrown the error), and returns the result. The sync and async clients only drive plans.
"""

from __future__ import annotations

import base64
import math
import sys
import uuid
from array import array
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, NotRequired, TypedDict, TypeVar

from ._http import Call, encode
from .errors import MemcloudError, ServiceUnavailable, ValidationError
from .models import Episode, Page, QueryHit, Snapshot, Stats

T = TypeVar("T")
Plan = Generator[Call, Any, T]
Time = int | datetime  # milliseconds since the epoch, or an aware datetime
DEFAULT_BATCH_SIZE = 1000  # the server's AGENT_MEM_MAX_BATCH default


class EpisodeFields(TypedDict, total=False):
    """Optional fields of a stored episode (docs/api.md §3, §8)."""

    id: str
    metadata: Mapping[str, Any]
    timestamp: Time
    tags: Sequence[str]
    source: str
    user_id: str
    steps: Sequence[Any]
    expires_at: Time
    ttl_secs: int
    text: str


class Filters(TypedDict, total=False):
    """Filters shared by query, list and delete_many; they combine with AND."""

    min_reward: float
    tags_any: Sequence[str]
    tags_all: Sequence[str]
    task_id_prefix: str
    source: str
    user_id: str
    time_after: Time
    time_before: Time


class Changes(TypedDict, total=False):
    """What PATCH may change. `metadata` replaces, `metadata_merge` merges; the embedding is immutable."""

    metadata: Mapping[str, Any]
    metadata_merge: Mapping[str, Any]
    tags: Sequence[str]
    reward: float
    task_id: str
    source: str
    user_id: str
    expires_at: NotRequired[Time | None]


def vector(values: Any, name: str = "state_embedding") -> str:
    """An embedding as the server's binary form (docs/api.md §3): base64 of its little-endian
    float32 bytes, from a numpy array or any sequence of numbers. A third of the bytes of the
    numbers in JSON, and no float formatting on either side."""
    if hasattr(values, "__array__"):
        import numpy as np

        floats = np.asarray(values, dtype="<f4").ravel()
        finite = bool(np.isfinite(floats).all())
        raw = floats.tobytes()
    else:
        packed = array("f", values)
        finite = all(map(math.isfinite, packed))
        if sys.byteorder == "big":
            packed.byteswap()
        raw = packed.tobytes()
    if not finite:  # NaN, inf, or too large for float32 (1e39)
        raise ValidationError(f"{name}: every value must be a finite float32 number")
    return base64.b64encode(raw).decode("ascii")


def vectors(values: list[Any], name: str = "state_embedding") -> list[str]:
    """vector() of each value. When all are 1-D real numpy arrays of one length (the usual batch),
    at once: one conversion, one finiteness check and, when a row's bytes are a multiple of 3 long
    (no padding, so the rows' base64 joined is the base64 of their bytes joined), one encode."""
    np = sys.modules.get("numpy")
    if np is None or len(values) < 2 or not all(
            type(v) is np.ndarray and v.ndim == 1 and v.dtype.kind in "fiu" for v in values):
        return [vector(v, name) for v in values]
    if len({v.shape for v in values}) != 1:
        return [vector(v, name) for v in values]
    with np.errstate(over="ignore", invalid="ignore"):  # too large for float32: inf, refused below
        matrix = np.stack(values).astype("<f4")
    if not np.isfinite(matrix).all():
        raise ValidationError(f"{name}: every value must be a finite float32 number")
    raw, size = matrix.tobytes(), 4 * matrix.shape[1]
    if size % 3:
        return [base64.b64encode(raw[i:i + size]).decode("ascii") for i in range(0, len(raw), size)]
    text, step = base64.b64encode(raw).decode("ascii"), size // 3 * 4
    return [text[i:i + step] for i in range(0, len(text), step)]


def floats(value: Any) -> Any:
    """An embedding the server sent as base64 (embedding_format=base64) as a list of floats."""
    if not isinstance(value, str):
        return value
    packed = array("f", base64.b64decode(value))
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tolist()


def _with_floats(data: Any) -> Any:
    """An episode (dict) from the server with its base64 embedding as floats."""
    if isinstance(data, dict) and "state_embedding" in data:
        data["state_embedding"] = floats(data["state_embedding"])
    return data


def millis(value: Time) -> int:
    return round(value.timestamp() * 1000) if isinstance(value, datetime) else int(value)


def _filters(filters: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(filters)
    for key in ("time_after", "time_before"):
        if out.get(key) is not None:
            out[key] = millis(out[key])
    for key in ("tags_any", "tags_all"):
        if out.get(key) is not None:
            out[key] = list(out[key])
    return out


def episode_body(episode: Mapping[str, Any] | Episode) -> dict[str, Any]:
    """The body that stores `episode`, with a fresh uuid4 id when it has none so a retry is harmless."""
    data = _body(episode)
    if data.get("state_embedding") is not None:
        data["state_embedding"] = vector(data["state_embedding"])
    return data


def _body(episode: Mapping[str, Any] | Episode) -> dict[str, Any]:
    """episode_body() but for the embedding, left as given."""
    if isinstance(episode, Episode):
        data = {k: v for k, v in asdict(episode).items() if v is not None and k != "extra"}
    else:
        data = dict(episode)
    data["id"] = str(data.get("id") or uuid.uuid4())
    if data.get("state_embedding") is None:  # without one, the server decides (it may embed `text`)
        data.pop("state_embedding", None)
    for key in ("timestamp", "expires_at"):
        if data.get(key) is not None:
            data[key] = millis(data[key])
    if data.get("tags") is not None:
        data["tags"] = list(data["tags"])
    return data


def store(task_id: str, state_embedding: Any, reward: float | None, fields: EpisodeFields) -> Plan[str]:
    if reward is None:
        raise TypeError("store() needs a reward")
    body = episode_body({**fields, "task_id": task_id, "state_embedding": state_embedding, "reward": reward})
    answer = yield Call("POST", "/v1/episodes", body)
    return str(answer["id"])


def put(episode_id: str, task_id: str, state_embedding: Any, reward: float, fields: EpisodeFields) -> Plan[bool]:
    """Create or replace the whole episode `episode_id` atomically; True if it was created."""
    body = episode_body({**fields, "id": str(episode_id), "task_id": task_id, "state_embedding": state_embedding,
                         "reward": reward})
    body.pop("id")
    answer = yield Call("PUT", f"/v1/episodes/{episode_id}", body)
    return bool(answer["created"])


def batch_calls(episodes: Iterable[Mapping[str, Any] | Episode], batch_size: int) -> Iterator[Call]:
    """One `POST /v1/episodes/batch` per chunk of `batch_size`, each chunk's embeddings encoded
    together (vectors()): one chunk is held at a time, never the input."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    chunk: list[dict[str, Any]] = []
    for episode in episodes:
        chunk.append(_body(episode))
        if len(chunk) == batch_size:
            yield _batch_call(chunk)
            chunk = []
    if chunk:
        yield _batch_call(chunk)


def _batch_call(bodies: list[dict[str, Any]]) -> Call:
    embedded = [body for body in bodies if "state_embedding" in body]
    for body, text in zip(embedded, vectors([body["state_embedding"] for body in embedded]), strict=True):
        body["state_embedding"] = text
    return Call("POST", "/v1/episodes/batch", content=encode({"episodes": bodies}))


def store_batch(episodes: Iterable[Mapping[str, Any] | Episode], batch_size: int) -> Plan[list[str]]:
    """Stores in chunks of `batch_size`; each chunk is all-or-nothing, the whole is not: an error
    carries `stored_ids`, the ids of the chunks stored before it (calling again with the same
    episodes, ids included, is safe)."""
    ids: list[str] = []
    try:
        for call in batch_calls(episodes, batch_size):
            ids += (yield call)["ids"]
    except MemcloudError as error:
        error.stored_ids = ids  # type: ignore[attr-defined]
        raise
    return ids


def get(episode_id: str) -> Plan[Episode]:
    answer = yield Call("GET", f"/v1/episodes/{episode_id}", params={"embedding_format": "base64"})
    return Episode.from_dict(_with_floats(answer))


def delete(episode_id: str) -> Plan[int]:
    answer = yield Call("DELETE", f"/v1/episodes/{episode_id}", replayable=False)
    return int(answer["removed"])


class Ranking(TypedDict, total=False):
    """How a query ranks (docs/api.md §4): `mode` vector (the default), keyword (BM25 over the
    episodes' text, needs `text`) or hybrid (reciprocal rank fusion of both); `rrf_k`,
    `vector_weight` and `keyword_weight` tune hybrid."""

    text: str | None
    mode: str | None
    rrf_k: int | None
    vector_weight: float | None
    keyword_weight: float | None


def query(embedding: Any, top_k: int, include_embedding: bool, filters: Filters,
          ranking: Ranking | None = None) -> Plan[list[QueryHit]]:
    ranking = dict(ranking or {})
    body: dict[str, Any] = {"top_k": top_k, **_filters(filters)}
    if embedding is not None:
        body["query_embedding"] = vector(embedding, "query_embedding")
    if ranking.get("text") is not None:
        body["query_text"] = ranking.pop("text")
    body.update({k: v for k, v in ranking.items() if v is not None})
    if include_embedding:
        body["include_embedding"] = True
        body["embedding_format"] = "base64"
    answer = yield Call("POST", "/v1/query", body)
    return [QueryHit.from_dict(_with_floats(e)) for e in answer["episodes"]]


def list_episodes(limit: int, cursor: str | None, include_embedding: bool, filters: Filters) -> Plan[Page]:
    params = {k: _param(v) for k, v in _filters(filters).items() if v is not None}
    params["limit"] = str(limit)
    if cursor:
        params["cursor"] = cursor
    if include_embedding:
        params["include_embedding"] = "true"
        params["embedding_format"] = "base64"
    answer = yield Call("GET", "/v1/episodes", params=params)
    for episode in answer.get("episodes", ()):
        _with_floats(episode)
    return Page.from_dict(answer)


def _param(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def patch(episode_id: str, changes: Changes) -> Plan[Episode]:
    body: dict[str, Any] = dict(changes)
    if body.get("expires_at") is not None:
        body["expires_at"] = millis(body["expires_at"])
    if body.get("tags") is not None:
        body["tags"] = list(body["tags"])
    return Episode.from_dict((yield Call("PATCH", f"/v1/episodes/{episode_id}", body)))


def delete_many(ids: Sequence[str] | None, filters: Filters) -> Plan[int]:
    if ids is not None and filters:
        raise ValueError("delete_many takes ids or filters, not both")
    body = {"ids": [str(i) for i in ids]} if ids is not None else {"filter": _filters(filters)}
    answer = yield Call("POST", "/v1/episodes/delete", body, replayable=False)
    return int(answer["removed"])


def prune(kind: str, body: dict[str, int]) -> Plan[int]:
    answer = yield Call("POST", f"/v1/prune/{kind}", body, replayable=False)
    return int(answer["removed"])


def save(path: str) -> Plan[int]:
    return int((yield Call("POST", "/v1/save", {"path": path}))["episodes"])


def load(path: str) -> Plan[int]:
    return int((yield Call("POST", "/v1/load", {"path": path}))["episodes"])


def list_snapshots() -> Plan[list[Snapshot]]:
    return [Snapshot.from_dict(s) for s in (yield Call("GET", "/v1/snapshots"))["snapshots"]]


def checkpoint() -> Plan[int]:
    return int((yield Call("POST", "/v1/checkpoint", {}))["episodes"])


def stats() -> Plan[Stats]:
    return Stats.from_dict((yield Call("GET", "/v1/stats")))


def health() -> Plan[bool]:
    yield Call("GET", "/health")
    return True


def ready() -> Plan[bool]:
    """True when the server and its database answer; False on 503 (not retried: it is the answer)."""
    try:
        yield Call("GET", "/ready", retry=False)
    except ServiceUnavailable:
        return False
    return True
