"""A plain-Python model of one tenant's episodes (docs/api.md §2, §4 and §9), the oracle of the
model-based test. Removals take an optional `user`: what a user-bound key may remove, only that
user's episodes. Embeddings are small integer vectors, so every score has an exact comparison
key: ties are real ties and the tie-break of docs/api.md §9.4 (score, then newer timestamp, then later stored)
decides the order, with no float rounding in the model."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np

SCORE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Ep:
    id: str
    task_id: str
    emb: tuple[int, ...]
    reward: int
    timestamp: int
    tags: tuple[str, ...]
    source: str | None
    user_id: str | None
    seq: int
    body: dict[str, Any]  # exactly what was sent, for idempotent retries
    patched: bool = False


@dataclass
class TenantModel:
    slug: str
    metric: str
    episodes: dict[str, Ep] = field(default_factory=dict)
    next_seq: int = 0

    # ----- writes -----
    def add(self, episode_id: str, body: dict[str, Any], timestamp: int) -> None:
        self.episodes[episode_id] = Ep(
            id=episode_id, task_id=body["task_id"], emb=tuple(body["state_embedding"]), reward=body["reward"],
            timestamp=timestamp, tags=tuple(dict.fromkeys(body.get("tags", []))), source=body.get("source"),
            user_id=body.get("user_id"), seq=self.next_seq, body=body,
        )
        self.next_seq += 1

    def patch(self, episode_id: str, changes: dict[str, Any]) -> None:
        fields = {k: tuple(dict.fromkeys(v)) if k == "tags" else v for k, v in changes.items()}
        self.episodes[episode_id] = replace(self.episodes[episode_id], patched=True, **fields)

    def delete_ids(self, ids: list[str], user: str | None = None) -> int:
        return self._remove([i for i in dict.fromkeys(ids) if i in self.episodes and self.owns(user, i)])

    def delete_matching(self, flt: dict[str, Any]) -> int:
        return self._remove([e.id for e in self.episodes.values() if self.matches(e, flt)])

    def owns(self, user: str | None, episode_id: str) -> bool:
        """Whether a key bound to `user` (None: a tenant-wide key) may see and change the episode."""
        return user is None or self.episodes[episode_id].user_id == user

    def of(self, user: str | None) -> list[Ep]:
        return [e for e in self.episodes.values() if user is None or e.user_id == user]

    def snapshot(self) -> list[Ep]:
        return sorted(self.episodes.values(), key=lambda e: e.seq)

    def load(self, saved: list[Ep]) -> None:
        """Replace everything with a snapshot's episodes, stored anew in the snapshot's order. What the
        client first sent is unknown now, so they no longer serve for idempotent retries."""
        self.episodes = {}
        for e in saved:
            self.episodes[e.id] = replace(e, seq=self.next_seq, patched=True)
            self.next_seq += 1

    def newest_first(self, user: str | None = None) -> list[Ep]:
        return sorted(self.of(user), key=lambda e: (-e.timestamp, -e.seq))

    def prune_older_than(self, cutoff: int, user: str | None = None) -> int:
        doomed = [e.id for e in self.of(user) if e.timestamp < cutoff]
        return self._remove(doomed)

    def prune_keep_newest(self, n: int, user: str | None = None) -> int:
        return self._remove([e.id for e in self.newest_first(user)[n:]])

    def prune_keep_highest_reward(self, n: int, user: str | None = None) -> int:
        ranked = sorted(self.of(user), key=lambda e: (-e.reward, -e.timestamp, -e.seq))
        return self._remove([e.id for e in ranked[n:]])

    def _remove(self, ids: list[str]) -> int:
        for episode_id in ids:
            del self.episodes[episode_id]
        return len(ids)

    # ----- reads -----
    def exact_key(self, emb: tuple[int, ...], q: tuple[int, ...]) -> Fraction:
        """Orders like the score, exactly (higher is better)."""
        dot = sum(a * b for a, b in zip(emb, q, strict=True))
        if self.metric == "dot":
            return Fraction(dot)
        if self.metric == "l2":
            return Fraction(-sum((a - b) ** 2 for a, b in zip(emb, q, strict=True)))
        # cosine: q's norm is common to all rows, so sign(d) * d^2 / |x|^2 orders like d / |x|
        return Fraction((1 if dot >= 0 else -1) * dot * dot, sum(a * a for a in emb))

    def score(self, emb: tuple[int, ...], q: tuple[int, ...]) -> float:
        dot = sum(a * b for a, b in zip(emb, q, strict=True))
        if self.metric == "dot":
            return float(dot)
        if self.metric == "l2":
            return -math.sqrt(sum((a - b) ** 2 for a, b in zip(emb, q, strict=True)))
        return dot / math.sqrt(sum(a * a for a in emb) * sum(b * b for b in q))

    def matches(self, e: Ep, flt: dict[str, Any]) -> bool:
        if "min_reward" in flt and e.reward < flt["min_reward"]:
            return False
        if flt.get("tags_any") and not set(flt["tags_any"]) & set(e.tags):
            return False
        if flt.get("tags_all") and not set(flt["tags_all"]) <= set(e.tags):
            return False
        if "task_id_prefix" in flt and not e.task_id.startswith(flt["task_id_prefix"]):
            return False
        if "source" in flt and e.source != flt["source"]:
            return False
        if "user_id" in flt and e.user_id != flt["user_id"]:
            return False
        if "time_after" in flt and e.timestamp < flt["time_after"]:
            return False
        return not ("time_before" in flt and e.timestamp > flt["time_before"])

    def ranked(self, q: tuple[int, ...], flt: dict[str, Any]) -> list[tuple[Fraction, Ep]]:
        hits = [(self.exact_key(e.emb, q), e) for e in self.episodes.values() if self.matches(e, flt)]
        return sorted(hits, key=lambda h: (-h[0], -h[1].timestamp, -h[1].seq))


def check_query(model: TenantModel, q: tuple[int, ...], flt: dict[str, Any], top_k: int,
                answer: list[dict[str, Any]]) -> int:
    """Fail unless `answer` is the exact filtered top-k. Returns how many positions relied on the
    float leniency: inside a group of mathematically equal scores, the server may order by its own
    float32 scores when those differ (cosine rounding); equal float32 scores must follow the tie-break."""
    expected = model.ranked(q, flt)
    k = min(top_k, len(expected))
    got_ids = [hit["id"] for hit in answer]
    assert len(got_ids) == k, f"expected {k} hits, got {len(got_ids)}"
    assert len(set(got_ids)) == k, f"duplicate ids in answer {got_ids}"
    foreign = [i for i in got_ids if i not in model.episodes]
    assert not foreign, f"ids not stored in tenant {model.slug}: {foreign}"
    lenient = 0
    got = [model.episodes[i] for i in got_ids]
    for hit, e in zip(answer, got, strict=True):
        assert model.matches(e, flt), f"{e.id} does not match the filter {flt}"
        assert abs(hit["score"] - model.score(e.emb, q)) <= SCORE_TOLERANCE, (hit["score"], model.score(e.emb, q))
        assert (hit["task_id"], hit["reward"], hit["timestamp"], tuple(hit["tags"]), hit["source"],
                hit["user_id"]) == (e.task_id, e.reward, e.timestamp, e.tags, e.source, e.user_id), hit
    got_keys = [model.exact_key(e.emb, q) for e in got]
    assert got_keys == [key for key, _ in expected[:k]], "the answer is not the best-scoring top-k"
    if got_ids == [e.id for _, e in expected[:k]]:
        return 0
    # Same score groups, different members or order: acceptable only where float32 rounding makes
    # mathematically equal scores differ; equal float32 scores must follow the tie-break.
    for key in sorted(set(got_keys), reverse=True):
        members = [(hit["score"], e) for hit, e, gk in zip(answer, got, got_keys, strict=True) if gk == key]
        want = [e.id for gk, e in expected[:k] if gk == key]
        if [e.id for _, e in members] == want:
            continue
        group = [e for gk, e in expected if gk == key]
        rounded = {float32_score(model.metric, e.emb, q) for e in group} | {s for s, _ in members}
        assert len(rounded) > 1, f"equal scores not ordered newest first: {[e.id for _, e in members]} vs {want}"
        order = sorted(members, key=lambda m: (-m[0], -m[1].timestamp, -m[1].seq))
        assert [e.id for _, e in order] == [e.id for _, e in members], "not ordered by the server's own scores"
        lenient += len(members)
    return lenient


def float32_score(metric: str, emb: tuple[int, ...], q: tuple[int, ...]) -> float:
    """The score as float32 arithmetic rounds it (close to, not necessarily bit-equal with, the server's)."""
    x, y = np.asarray(emb, dtype=np.float32), np.asarray(q, dtype=np.float32)
    if metric == "cosine":
        x, y = x / float(np.linalg.norm(x)), y / float(np.linalg.norm(y))
    if metric == "l2":
        return float(-np.sqrt(np.float32(np.dot(x - y, x - y))))
    return float(np.float32(np.dot(x, y)))
