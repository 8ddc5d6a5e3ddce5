"""Per-tenant fixed-window rate limit (docs/api.md §5, §8 and §9).

The window is aligned to the clock (`floor(now / window)`); every authenticated /v1 request
counts except those answered 429 (the counter refuses to count past the limit). Without a limit
(neither the tenant's own nor AGENT_MEM_RATE_LIMIT) nothing is counted and no rate-limit headers
are sent: there is no limit to describe.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.conf import settings

from core import counters, metrics
from core.errors import MemcloudError

from .models import Tenant

POLICY = "default"


class RateLimited(MemcloudError):
    status = 429


@dataclass(frozen=True)
class RateState:
    limit: int
    window_secs: int
    used: int  # requests counted in this window, this one included when allowed
    reset_secs: int  # whole seconds until the window ends (>= 1)
    allowed: bool

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    def headers(self) -> dict[str, str]:
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_secs),
            # IETF draft-ietf-httpapi-ratelimit-headers: quota policy, then the live counters.
            "RateLimit-Policy": f'"{POLICY}";q={self.limit};w={self.window_secs}',
            "RateLimit": f'"{POLICY}";r={self.remaining};t={self.reset_secs}',
        }
        if not self.allowed:
            out["Retry-After"] = str(self.reset_secs)
        return out


def effective_limit(tenant: Tenant) -> int | None:
    return tenant.rate_limit or settings.AGENT_MEM_RATE_LIMIT


def rate_limit_hit(*, tenant: Tenant, now: float | None = None) -> RateState | None:
    """Count this request against the tenant's window; None when the tenant has no limit."""
    limit = effective_limit(tenant)
    if not limit:
        return None
    window = settings.AGENT_MEM_RATE_WINDOW_SECS
    now = time.time() if now is None else now
    window_no = math.floor(now / window)
    reset = max(1, math.ceil((window_no + 1) * window - now))
    used, backend = counters.hit(tenant_id=tenant.pk, tenant_slug=tenant.slug, window_no=window_no, limit=limit, ttl_secs=window + 5)
    if used is None:
        metrics.RATE_LIMITED.labels(backend=backend).inc()
        return RateState(limit=limit, window_secs=window, used=limit, reset_secs=reset, allowed=False)
    return RateState(limit=limit, window_secs=window, used=used, reset_secs=reset, allowed=True)


def refusal(state: RateState) -> RateLimited:
    return RateLimited(
        f"rate limit exceeded: {state.limit} requests per {state.window_secs} s window; "
        f"retry in {state.reset_secs} s"
    )
