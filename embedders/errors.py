"""The embedder's failures, each with the status the API answers (docs/api.md §4, Embedders).

Nothing is stored when one is raised: the embedding happens before any write."""

from __future__ import annotations

from core.errors import InvalidInput, MemcloudError


class EmbedderError(MemcloudError):
    """Base of every embedder failure; the message names `embedder` and the cause."""


class EmbedderUnavailable(EmbedderError):
    """Provider unreachable, timed out, rate limiting us, or the local model cannot load: retry later."""

    status = 503

    def __init__(self, message: str, *, retry_after: int = 1):
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, int(retry_after)))}


class EmbedderBadAnswer(EmbedderError):
    """The provider failed (5xx), answered something unusable (malformed, wrong count or dim,
    non-finite values), refused our credentials (401/403) or has no such model or endpoint (404):
    the fault is upstream or in the deployment's configuration, not the client's."""

    status = 502


class EmbedderRejected(EmbedderError, InvalidInput):
    """The provider refused the input (a 4xx other than 401/403/404/429): the client can fix it."""

    status = 400
