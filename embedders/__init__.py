"""Tenant embedders: text to vectors, in process (sentence-transformers) or over HTTP (OpenAI-compatible).

Imports no other project package but `core`; torch is imported only when a local model is first used.
Specs and rules: docs/api.md §2 (Embedders); costs: docs/design.md (Embedders)."""

from .base import Embedder
from .errors import EmbedderBadAnswer, EmbedderError, EmbedderRejected, EmbedderUnavailable
from .registry import dim_of, embed, embedder_for
from .spec import EmbedderSpec, parse_spec

__all__ = [
    "Embedder", "EmbedderBadAnswer", "EmbedderError", "EmbedderRejected", "EmbedderSpec",
    "EmbedderUnavailable", "dim_of", "embed", "embedder_for", "parse_spec",
]
