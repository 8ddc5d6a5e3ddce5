"""Python client for Memcloud, the hosted episodic-memory service for AI agents."""

from ._api import Changes, EpisodeFields, Filters
from ._http import RetryPolicy
from .async_client import AsyncMemcloudClient
from .client import MemcloudClient
from .errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    Conflict,
    MemcloudError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    ValidationError,
)
from .models import Episode, Page, QueryHit, Snapshot, Stats
from .tokens import mint_user_token

__version__ = "0.1.0"
__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AsyncMemcloudClient",
    "AuthenticationError",
    "Changes",
    "Conflict",
    "Episode",
    "EpisodeFields",
    "Filters",
    "MemcloudClient",
    "MemcloudError",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "PermissionDenied",
    "QueryHit",
    "QuotaExceeded",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "Snapshot",
    "Stats",
    "ValidationError",
    "mint_user_token",
]
