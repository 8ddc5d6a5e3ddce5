"""Synthetic episodes for the benchmarks: clustered embeddings plus filterable columns.

Embeddings come from a Gaussian mixture (Zipf-weighted clusters) and are L2-normalised, so cosine,
dot and the peers' cosine distance rank the same. Every column is drawn from fixed seeds, so two
runs (and every system within a run) see identical data and queries.

Filters used throughout the benchmarks, with their exact match fractions:
  none       every episode
  broad      tags_any ["common"]  -> exactly n // 2 episodes (50 %)
  selective  tags_any ["rare"]    -> exactly max(1, n // 1000) episodes (0.1 %)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

DIM = 384
BASE_TS_MS = 1_760_000_000_000
SPAN_MS = 30 * 24 * 3600 * 1000
SOURCES = ("agent-a", "agent-b", "agent-c", "agent-d")
N_USERS = 100
N_TOPICS = 16
FILTERS: dict[str, dict] = {
    "none": {},
    "broad": {"tags_any": ["common"]},
    "selective": {"tags_any": ["rare"]},
}


@dataclass
class Dataset:
    """n episodes in columns; row i is the i-th episode in store order."""

    embeddings: np.ndarray  # float32 (n, dim), unit rows, C-contiguous
    ids: list[str]
    task_id: list[str]
    reward: np.ndarray  # float64
    timestamp: np.ndarray  # int64 ms, non-decreasing in store order
    source: list[str]
    user_id: list[str]
    tags: list[list[str]]
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # filter name -> bool[n]

    @property
    def n(self) -> int:
        return self.embeddings.shape[0]

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    def episode(self, i: int) -> dict:
        """Row i as an API episode body (embedding left as a float32 array for orjson)."""
        return {
            "id": self.ids[i],
            "task_id": self.task_id[i],
            "state_embedding": self.embeddings[i],
            "reward": float(self.reward[i]),
            "timestamp": int(self.timestamp[i]),
            "tags": self.tags[i],
            "source": self.source[i],
            "user_id": self.user_id[i],
        }


def _centers(dim: int, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.8
    return centers, weights / weights.sum()


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _mixture(rng: np.random.Generator, centers: np.ndarray, clusters: np.ndarray, spread: float) -> np.ndarray:
    out = np.empty((clusters.size, centers.shape[1]), dtype=np.float32)
    chunk = 65_536
    for start in range(0, clusters.size, chunk):
        c = clusters[start : start + chunk]
        noise = rng.standard_normal((c.size, centers.shape[1]), dtype=np.float32)
        out[start : start + c.size] = centers[c] + spread * noise
    return _unit(out)


def make_dataset(n: int, *, dim: int = DIM, seed: int = 7, n_clusters: int = 256, spread: float = 0.9) -> Dataset:
    """n episodes; the same (n, dim, seed) always gives the same data."""
    centers, weights = _centers(dim, n_clusters, seed)
    rng = np.random.default_rng(seed + 1)
    clusters = rng.choice(n_clusters, size=n, p=weights)
    embeddings = _mixture(rng, centers, clusters, spread)
    common = np.zeros(n, dtype=bool)
    common[rng.permutation(n)[: n // 2]] = True
    rare = np.zeros(n, dtype=bool)
    rare[rng.permutation(n)[: max(1, n // 1000)]] = True
    reward = rng.uniform(-1.0, 1.0, n)
    timestamp = BASE_TS_MS + np.sort(rng.integers(0, SPAN_MS, n)).astype(np.int64)
    source_ix = rng.integers(0, len(SOURCES), n)
    user_ix = rng.integers(0, N_USERS, n)
    id_bytes = rng.bytes(16 * n)
    ids = [str(uuid.UUID(bytes=id_bytes[16 * i : 16 * i + 16], version=4)) for i in range(n)]
    tags = []
    for i in range(n):
        row = [f"topic-{clusters[i] % N_TOPICS}"]
        if common[i]:
            row.append("common")
        if rare[i]:
            row.append("rare")
        tags.append(row)
    return Dataset(
        embeddings=embeddings,
        ids=ids,
        task_id=[f"task_{c:03d}_{i % 50:02d}" for i, c in enumerate(clusters.tolist())],
        reward=reward,
        timestamp=timestamp,
        source=[SOURCES[s] for s in source_ix.tolist()],
        user_id=[f"user-{u}" for u in user_ix.tolist()],
        tags=tags,
        masks={"none": np.ones(n, dtype=bool), "broad": common, "selective": rare},
    )


def make_queries(n_queries: int, *, dim: int = DIM, seed: int = 7, n_clusters: int = 256, spread: float = 0.9) -> np.ndarray:
    """Query vectors from the same mixture as make_dataset (same seed), but fresh draws."""
    centers, weights = _centers(dim, n_clusters, seed)
    rng = np.random.default_rng(seed + 1_000_003)
    clusters = rng.choice(n_clusters, size=n_queries, p=weights)
    return _mixture(rng, centers, clusters, spread)


# An agent repeating its tasks: many small clusters of near-duplicates (an episode within about
# cos 0.99 of its task's others), and queries drawn inside them. The int8 bounds of such rows
# overlap the most, so the exact search re-scores the most candidates here.
DENSE = {"n_clusters_per": 50, "spread": 0.08}


def make_dense_dataset(n: int, *, dim: int = DIM, seed: int = 11) -> Dataset:
    """n episodes in n // 50 tight clusters of near-duplicates (same columns as make_dataset)."""
    return make_dataset(n, dim=dim, seed=seed, n_clusters=max(1, n // DENSE["n_clusters_per"]),
                        spread=DENSE["spread"])


def make_dense_queries(n_queries: int, n: int, *, dim: int = DIM, seed: int = 11) -> np.ndarray:
    """Queries inside make_dense_dataset(n)'s clusters (fresh draws of the same mixture)."""
    return make_queries(n_queries, dim=dim, seed=seed, n_clusters=max(1, n // DENSE["n_clusters_per"]),
                        spread=DENSE["spread"])


def slice_dataset(ds: Dataset, start: int, stop: int) -> Dataset:
    """Rows [start, stop) as their own Dataset (masks sliced too)."""
    return Dataset(
        embeddings=ds.embeddings[start:stop],
        ids=ds.ids[start:stop],
        task_id=ds.task_id[start:stop],
        reward=ds.reward[start:stop],
        timestamp=ds.timestamp[start:stop],
        source=ds.source[start:stop],
        user_id=ds.user_id[start:stop],
        tags=ds.tags[start:stop],
        masks={k: v[start:stop] for k, v in ds.masks.items()},
    )
