"""The embedder interface, and the one check every answer passes before anyone uses it."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .errors import EmbedderBadAnswer


class Embedder(ABC):
    """Turns texts into float32 vectors, one row per text, in order.

    `embed` raises only EmbedderError subclasses (each with its HTTP status)."""

    name: str  # the canonical spec string

    @property
    @abstractmethod
    def dim(self) -> int:
        """The width of every vector (may load the model, or call the provider once, the first time)."""

    @abstractmethod
    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dim); an empty list gives shape (0, dim)."""


def checked(vectors: np.ndarray, *, count: int, dim: int | None, name: str) -> np.ndarray:
    """The answer as C-contiguous float32 (count, dim), finite; else EmbedderBadAnswer (502)."""
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != count:
        raise EmbedderBadAnswer(f"embedder: {name} answered {out.shape[0] if out.ndim else 0} vectors "
                                f"for {count} texts")
    if dim is not None and out.shape[1] != dim:
        raise EmbedderBadAnswer(f"embedder: {name} answered {out.shape[1]}-d vectors, expected {dim}")
    if not np.isfinite(out).all():
        raise EmbedderBadAnswer(f"embedder: {name} answered non-finite values")
    return out
