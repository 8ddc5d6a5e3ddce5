"""Typed exceptions, one per kind of answer the server gives (its body is always {"error": "..."})."""

from __future__ import annotations

from collections.abc import Mapping


class MemcloudError(Exception):
    """Base class. `status` is the HTTP status (None when no answer came), `message` the server's words."""

    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        return f"{self.status}: {self.message}" if self.status is not None else self.message


class APIConnectionError(MemcloudError):
    """The server could not be reached, or the connection broke before an answer came."""


class APITimeoutError(APIConnectionError):
    """No answer within the client's timeout."""


class ValidationError(MemcloudError):
    """400: the request was refused; the message names the field."""

    status = 400


class AuthenticationError(MemcloudError):
    """401: missing, unknown, revoked or expired API key."""

    status = 401


class PermissionDenied(MemcloudError):
    """403: the key's scope does not allow the call, or the tenant is inactive."""

    status = 403


class QuotaExceeded(PermissionDenied):
    """403: the call would exceed one of the tenant's quotas (e.g. max_episodes); nothing was stored."""


class NotFound(MemcloudError):
    """404: no such episode or snapshot for this tenant."""

    status = 404


class Conflict(MemcloudError):
    """409: an episode with this id exists with different content."""

    status = 409


class PayloadTooLarge(MemcloudError):
    """413: the request body is over the server's limit."""

    status = 413


class RateLimited(MemcloudError):
    """429: the tenant's request budget for this window is spent; `retry_after` is in whole seconds."""

    status = 429

    def __init__(self, message: str, *, status: int | None = 429, headers: Mapping[str, str] | None = None):
        super().__init__(message, status=status, headers=headers)
        self.retry_after: int | None = _retry_after(self.headers)


class ServiceUnavailable(MemcloudError):
    """503: the server (or its database) cannot answer right now."""

    status = 503


class ServerError(MemcloudError):
    """Any other 5xx."""


_BY_STATUS: dict[int, type[MemcloudError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
    503: ServiceUnavailable,
}

# A quota refusal names the limit it hit; a scope refusal names the scope it needs.
_QUOTA_WORDS = ("max_episodes", "quota")


def error_for(status: int, message: str, headers: Mapping[str, str]) -> MemcloudError:
    """The exception for an error answer."""
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else MemcloudError)
    if cls is PermissionDenied and any(word in message.lower() for word in _QUOTA_WORDS):
        cls = QuotaExceeded
    return cls(message, status=status, headers=headers)


def _retry_after(headers: Mapping[str, str]) -> int | None:
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if raw is None:
        return None
    try:
        return max(0, int(float(raw.strip())))
    except ValueError:
        return None  # an HTTP date: the server sends seconds, so this is not ours
