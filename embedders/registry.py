"""One embedder per spec per process, built on first use (a local model is loaded once per worker)."""

from __future__ import annotations

import threading

import numpy as np
from django.conf import settings

from core.errors import InvalidInput

from .base import Embedder, checked
from .errors import EmbedderBadAnswer, EmbedderUnavailable
from .local import LocalEmbedder
from .spec import parse_spec

_embedders: dict[str, Embedder] = {}
_lock = threading.Lock()


def provider_config():
    """The provider's settings. embedders.openai (and httpx, about 15 MB a worker) is imported only
    by a worker that has an openai: tenant to serve."""
    from .openai import ProviderConfig

    return ProviderConfig(
        url=settings.AGENT_MEM_EMBEDDINGS_URL,
        api_key=settings.AGENT_MEM_EMBEDDINGS_API_KEY,
        timeout_secs=float(settings.AGENT_MEM_EMBEDDINGS_TIMEOUT_SECS),
        batch=settings.AGENT_MEM_EMBEDDINGS_BATCH,
        retries=settings.AGENT_MEM_EMBEDDINGS_RETRIES,
        backoff_secs=settings.AGENT_MEM_EMBEDDINGS_BACKOFF_MS / 1000,
    )


def embedder_for(spec: str) -> Embedder:
    """The process's embedder for `spec` (InvalidInput naming `embedder` if the spec is malformed).
    Building it loads nothing and calls nothing: that happens on the first `embed` or `dim`."""
    parsed = parse_spec(spec)
    key = parsed.text
    embedder = _embedders.get(key)
    if embedder is not None:
        return embedder
    with _lock:
        embedder = _embedders.get(key)
        if embedder is None:
            if parsed.kind == "openai":
                from .openai import OpenAIEmbedder

                embedder = OpenAIEmbedder(parsed, provider_config())
            else:
                embedder = LocalEmbedder(parsed)
            _embedders[key] = embedder
    return embedder


def dim_of(spec: str) -> int:
    """The width of `spec`'s vectors, for tenant creation: `local-minilm` and `openai:<model>@<dim>`
    without loading or calling anything; `sentence-transformers:<model>` loads the model;
    `openai:<model>` embeds one probe text."""
    parsed = parse_spec(spec)
    if parsed.dim is not None:
        return parsed.dim
    try:
        return embedder_for(spec).dim
    except EmbedderUnavailable as exc:
        if parsed.kind == "openai":
            raise  # the provider is down: retry later
        # A local model that cannot load now will not load later either: refuse the spec.
        raise InvalidInput(str(exc)) from None


def embed(spec: str, texts: list[str], *, dim: int) -> np.ndarray:
    """`texts` embedded by the tenant's embedder, checked against the tenant's `dim`: float32 (n, dim).
    Raises only EmbedderError subclasses (400 / 502 / 503) and InvalidInput for a malformed spec."""
    embedder = embedder_for(spec)
    vectors = embedder.embed(texts)
    if vectors.ndim == 2 and vectors.shape[1] != dim:
        raise EmbedderBadAnswer(f"embedder: {embedder.name} gives {vectors.shape[1]}-d vectors, "
                                f"the tenant's dim is {dim}")
    return checked(vectors, count=len(texts), dim=dim, name=embedder.name)


def reset(*, kind: str | None = None) -> None:
    """Forget the embedders (of one kind): their settings are read again on next use."""
    with _lock:
        for key in [key for key in _embedders if kind is None or parse_spec(key).kind == kind]:
            embedder = _embedders.pop(key)
            close = getattr(embedder, "close", None)  # the openai embedder's HTTP client
            if close is not None:
                close()
