"""`openai:<model>`: any OpenAI-compatible embeddings endpoint (OpenAI, Azure, vLLM, Ollama, TEI, Infinity).

POST `<AGENT_MEM_EMBEDDINGS_URL>/embeddings` with {"model", "input": [...], "encoding_format": "float"},
in batches of AGENT_MEM_EMBEDDINGS_BATCH texts; connection errors, timeouts, 429 and 5xx are retried
with exponential backoff (Retry-After honoured, capped). The answer is checked: one vector per text,
put in order by `index`, every vector of the expected width, finite (docs/api.md §2, Embedders)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from .base import Embedder, checked
from .errors import EmbedderBadAnswer, EmbedderRejected, EmbedderUnavailable
from .spec import EmbedderSpec

logger = logging.getLogger("embedders")

PROBE_TEXT = "dimension probe"
MAX_BACKOFF_SECS = 8.0  # one wait between attempts never exceeds this, whatever Retry-After says


@dataclass(frozen=True)
class ProviderConfig:
    url: str  # base URL; `/embeddings` is appended (https://api.openai.com/v1, http://host:port/v1, ...)
    api_key: str
    timeout_secs: float
    batch: int
    retries: int  # attempts after the first
    backoff_secs: float  # first wait; doubles each retry


class _Retryable(Exception):
    def __init__(self, error: Exception, wait: float | None):
        super().__init__(str(error))
        self.error = error
        self.wait = wait


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:  # an HTTP date: rare from embedding providers; use our own backoff
        return None


def _provider_message(response: httpx.Response) -> str:
    """The provider's own error text: OpenAI's {"error": {"message"}}, or {"detail"}, or the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        detail = body.get("detail")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict) and detail[0].get("msg"):
            # FastAPI's validation errors (Infinity, TEI front-ends): the messages, not the echoed input.
            return "; ".join(str(item.get("msg")) for item in detail[:3] if isinstance(item, dict))[:300]
        for key in ("error", "detail", "message"):
            if body.get(key):
                return str(body[key])[:300]
    return str(body)[:300]


class OpenAIEmbedder(Embedder):
    def __init__(self, spec: EmbedderSpec, config: ProviderConfig):
        self.spec = spec
        self.name = spec.text
        self.config = config
        self._dim: int | None = spec.dim
        self._dim_lock = threading.Lock()
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        # httpx.Client is thread-safe and keeps connections alive across requests of this worker.
        self._client = httpx.Client(headers=headers, timeout=config.timeout_secs)
        self._endpoint = config.url.rstrip("/") + "/embeddings"

    def close(self) -> None:
        self._client.close()

    @property
    def dim(self) -> int:
        """The spec's `@<dim>`, else the width of one probe embedding (one call, once per process)."""
        if self._dim is None:
            with self._dim_lock:
                if self._dim is None:
                    self._dim = int(self._embed_batch([PROBE_TEXT], dim=None).shape[1])
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        dim = self._dim  # None: learnt from the first batch, then every batch must match it
        parts = []
        for start in range(0, len(texts), self.config.batch):
            part = self._embed_batch(texts[start:start + self.config.batch], dim=dim)
            dim = part.shape[1]
            parts.append(part)
        if self._dim is None:
            self._dim = dim
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _embed_batch(self, texts: list[str], *, dim: int | None) -> np.ndarray:
        """One batch, retried on transient failures with exponential backoff."""
        if not self.config.url:
            raise EmbedderUnavailable(f"embedder: {self.name}: AGENT_MEM_EMBEDDINGS_URL is not set", retry_after=60)
        payload = {"model": self.spec.model, "input": texts, "encoding_format": "float"}
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            try:
                return self._call(payload, count=len(texts), dim=dim)
            except _Retryable as transient:
                if attempt + 1 >= attempts:
                    raise transient.error from None
                wait = self.config.backoff_secs * (2 ** attempt)
                if transient.wait is not None:
                    wait = max(wait, transient.wait)
                wait = min(wait, MAX_BACKOFF_SECS)
                logger.warning("embedder %s: %s; retry %d/%d in %.1fs", self.name, transient.error,
                               attempt + 1, self.config.retries, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, payload: dict[str, Any], *, count: int, dim: int | None) -> np.ndarray:
        host = httpx.URL(self._endpoint).host
        try:
            response = self._client.post(self._endpoint, json=payload)
        except httpx.TimeoutException:
            raise _Retryable(EmbedderUnavailable(
                f"embedder: {self.name}: the provider at {host} timed out after {self.config.timeout_secs:g}s"),
                None) from None
        except httpx.TransportError as exc:
            raise _Retryable(EmbedderUnavailable(
                f"embedder: {self.name}: the provider at {host} is unreachable ({type(exc).__name__})"),
                None) from None
        status = response.status_code
        if status == 429:
            wait = _retry_after(response)
            raise _Retryable(EmbedderUnavailable(
                f"embedder: {self.name}: the provider is rate limiting: {_provider_message(response)}",
                retry_after=int(wait or 1)), wait)
        if status >= 500:
            raise _Retryable(EmbedderBadAnswer(
                f"embedder: {self.name}: the provider failed ({status}): {_provider_message(response)}"),
                _retry_after(response))
        if status in (401, 403):  # our credentials, not the client's input
            raise EmbedderBadAnswer(f"embedder: {self.name}: the provider refused our credentials ({status}): "
                                    f"{_provider_message(response)}")
        if status == 404:  # no such model or endpoint: the deployment's configuration, not the input
            raise EmbedderBadAnswer(f"embedder: {self.name}: the provider has no such model or endpoint "
                                    f"({status} from {self._endpoint}): {_provider_message(response)}")
        if status >= 400:
            raise EmbedderRejected(f"embedder: {self.name}: the provider refused the input ({status}): "
                                   f"{_provider_message(response)}")
        if status != 200:
            raise EmbedderBadAnswer(f"embedder: {self.name}: the provider answered {status}, expected 200")
        return checked(self._vectors(response, count), count=count, dim=dim, name=self.name)

    def _vectors(self, response: httpx.Response, count: int) -> np.ndarray:
        """`data[*].embedding` ordered by `data[*].index` (providers may answer out of order)."""
        bad = f"embedder: {self.name}: malformed answer from the provider"
        try:
            data = response.json()["data"]
            items = sorted(((int(item["index"]), item["embedding"]) for item in data), key=lambda pair: pair[0])
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderBadAnswer(f"{bad} ({type(exc).__name__}: {str(exc)[:200]})") from None
        if [index for index, _ in items] != list(range(len(items))):
            raise EmbedderBadAnswer(f"{bad} (indexes are not 0..n-1)")
        if len(items) != count:
            raise EmbedderBadAnswer(f"embedder: {self.name} answered {len(items)} vectors for {count} texts")
        try:
            return np.asarray([embedding for _, embedding in items], dtype=np.float32).reshape(count, -1)
        except (ValueError, TypeError) as exc:  # ragged rows, strings, base64 where floats were asked
            raise EmbedderBadAnswer(f"{bad} ({str(exc)[:200]})") from None
