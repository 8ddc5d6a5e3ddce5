"""Vectors for texts, from the tenant's embedder (docs/api.md §2.3): episodes stored with `text` and
no `state_embedding`, and queries by `query_text`. Called before any write or search, so an
embedder's failure (its own 400/502/503) stores nothing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.errors import InvalidInput
from embedders import embed
from tenants.models import Tenant

# Marks an episode whose vector the server made: its idempotency digest is of what the client sent
# (the text), not of the vector, which a remote provider may not reproduce bit for bit on a retry.
EMBEDDED_FROM_TEXT = "embedded_from_text"


def with_embeddings(*, tenant: Tenant, episodes: Sequence[dict]) -> Sequence[dict]:
    """The episodes, those without `state_embedding` given one from their `text` (one embedder call
    for the lot: the embedder batches by its own limit)."""
    missing = [i for i, e in enumerate(episodes) if e.get("state_embedding") is None]
    if not missing:
        return episodes
    if not tenant.embedder:
        where = f"episodes[{missing[0]}].state_embedding" if len(episodes) > 1 else "state_embedding"
        raise InvalidInput(f"{where}: required: tenant {tenant.slug!r} has no embedder to embed text")
    vectors = embed(tenant.embedder, [episodes[i]["text"] for i in missing], dim=tenant.dim)
    out = list(episodes)
    for i, vector in zip(missing, vectors, strict=True):
        out[i] = {**episodes[i], "state_embedding": np.asarray(vector, dtype=np.float32), EMBEDDED_FROM_TEXT: True}
    return out


def text_vector(*, tenant: Tenant, text: str) -> np.ndarray:
    """The query vector of `query_text`."""
    if not tenant.embedder:
        raise InvalidInput(f"query_embedding: required: tenant {tenant.slug!r} has no embedder for query_text")
    return np.asarray(embed(tenant.embedder, [text], dim=tenant.dim)[0], dtype=np.float32)
