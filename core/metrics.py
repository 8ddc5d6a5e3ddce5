"""Our Prometheus metrics (docs/api.md §6), declared once. Under gunicorn prometheus_client runs in
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set in gunicorn.conf.py): each worker writes its own
files and the /metrics view (ops/metrics.py) sums them, so a scrape answered by any worker shows the whole server.
Labels come from small fixed sets: route names, methods, status codes; never slugs, keys or paths."""

from __future__ import annotations

import threading
import time

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("agent_mem_requests", "Every /v1 request, whatever its status.")
STORED = Counter("agent_mem_store_episodes", "Episodes newly stored (idempotent retries excluded).")
QUERIES = Counter("agent_mem_query", "Queries answered 200.")
LATENCY = Histogram(
    "agent_mem_request_duration_seconds", "Request latency by endpoint (route name), method and status.",
    ["endpoint", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
MCP_TOOL_CALLS = Counter("agent_mem_mcp_tool_calls", "MCP tool calls by tool and outcome (ok, tool_error, "
                         "invalid_params, forbidden, rate_limited).", ["tool", "outcome"])
MCP_TOOL_DURATION = Histogram(
    "agent_mem_mcp_tool_duration_seconds", "MCP tool call latency by tool.", ["tool"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RATE_LIMITED = Counter("agent_mem_rate_limited", "Requests answered 429 by the rate limit.", ["backend"])
CACHE_BYTES = Gauge("agent_mem_index_cache_bytes", "Bytes of tenant indexes cached, summed over live workers.",
                    multiprocess_mode="livesum")
CACHE_TENANTS = Gauge("agent_mem_index_cache_tenants", "Tenant indexes cached, summed over live workers.",
                      multiprocess_mode="livesum")
CACHE_EVICTIONS = Counter("agent_mem_index_cache_evictions", "Tenant indexes evicted from worker caches.")

_evictions_seen = 0
_evictions_lock = threading.Lock()


def index_cache_changed(cache) -> None:
    """IndexCache.on_change hook: publish this worker's cache size and new evictions."""
    global _evictions_seen
    CACHE_BYTES.set(cache.bytes_used())
    CACHE_TENANTS.set(len(cache.entries))
    with _evictions_lock:
        new, _evictions_seen = cache.evictions - _evictions_seen, cache.evictions
    if new > 0:
        CACHE_EVICTIONS.inc(new)


_watched = None  # the worker's index cache, once its app has started (episodes/apps.py)
_last_refresh = 0.0
REFRESH_SECS = 1.0


def watch_index_cache(cache) -> None:
    """Publish `cache`'s size whenever it changes, and on requests (refresh_cache_gauges)."""
    global _watched
    _watched = cache
    cache.on_change = index_cache_changed


def refresh_cache_gauges() -> None:
    """Catch-ups grow indexes without a rebuild: republish the cache size, at most once a second."""
    global _last_refresh
    now = time.monotonic()
    if _watched is None or now - _last_refresh < REFRESH_SECS:
        return
    _last_refresh = now
    index_cache_changed(_watched)
