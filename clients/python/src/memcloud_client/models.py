"""What the server answers, as dataclasses. Unknown fields from a newer server land in `extra`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")


def _build(cls: type[T], data: Mapping[str, Any]) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    known = {k: v for k, v in data.items() if k in names and k != "extra"}
    if "extra" in names:
        known["extra"] = {k: v for k, v in data.items() if k not in names}
    return cls(**known)


@dataclass(kw_only=True)
class Episode:
    """One stored episode. `state_embedding` is None unless it was asked for (get always sends it)."""

    id: str
    task_id: str
    reward: float
    timestamp: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    source: str | None = None
    user_id: str | None = None
    steps: list[Any] | None = None
    expires_at: int | None = None
    text: str | None = None
    state_embedding: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Episode:
        return _build(cls, data)

    @property
    def time(self) -> datetime:
        """`timestamp` (milliseconds since the epoch) as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp / 1000, tz=UTC)


@dataclass(kw_only=True)
class QueryHit(Episode):
    """An episode returned by a query, with its `score` (higher is better): the similarity, the
    BM25 score (mode keyword) or the fused score (mode hybrid, which also gives each part's rank;
    `keyword_rank` is None for an episode holding no query term)."""

    score: float
    vector_rank: int | None = None
    keyword_rank: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueryHit:
        return _build(cls, data)


@dataclass(kw_only=True)
class Page:
    """One page of `list_episodes`: newest first; `next_cursor` is None on the last page."""

    episodes: list[Episode]
    next_cursor: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Page:
        return cls(
            episodes=[Episode.from_dict(e) for e in data.get("episodes", [])],
            next_cursor=data.get("next_cursor"),
        )


@dataclass(kw_only=True)
class Stats:
    """The tenant's own figures. `rate_limit`/`max_episodes` are None when unlimited."""

    tenant: str
    dim: int
    episodes: int
    rate_limit: int | None = None
    max_episodes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stats:
        return _build(cls, data)


@dataclass(kw_only=True)
class Snapshot:
    """A saved snapshot of the tenant's episodes (`created` as the server's ISO-8601 text)."""

    path: str
    episodes: int
    bytes: int
    created: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        return _build(cls, data)
