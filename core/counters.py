"""Shared counters for rate limits: one atomic check-and-increment per request, exact across
workers and replicas. The database by default; Redis when REDIS_URL is set, with the database as
the fallback while Redis is unreachable (never a 500 because of Redis)."""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

from core import db

from .models import RateCounter

logger = logging.getLogger("memcloud.ratelimit")

# One statement: the row of (tenant, window) is created at 1 or incremented only while under the
# limit. PostgreSQL locks the conflicting row and re-checks the WHERE on its latest version, so
# concurrent requests are serialised on the row and exactly `limit` of them get a row back;
# SQLite (>= 3.35 for RETURNING) serialises writers anyway. A request refused here did not count.
_TABLE = RateCounter._meta.db_table
_HIT_SQL = (
    f"INSERT INTO {_TABLE} (tenant_id, window_no, count) VALUES (%s, %s, 1) "
    f"ON CONFLICT (tenant_id, window_no) DO UPDATE SET count = {_TABLE}.count + 1 "
    f"WHERE {_TABLE}.count < %s RETURNING count"
)
_CLEAN_EVERY_SECS = 60.0

# Redis: the same check-then-increment, atomic because a script runs alone.
_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then return -1 end
used = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return used
"""
# After a Redis failure, stay on the database this long before trying Redis again, and say so
# in the log at most this often: an outage must not cost a connect timeout or a line per request.
_REDIS_RETRY_SECS = 5.0
_WARN_EVERY_SECS = 60.0


def db_hit(*, tenant_id: int, window_no: int, limit: int) -> int | None:
    """Count one request; its number in the window, or None when the window is full (not counted)."""
    row = db.fetch_one(_HIT_SQL, [tenant_id, window_no, limit])
    _maybe_clean(window_no)
    return row[0] if row else None


_last_clean = 0.0


def _maybe_clean(window_no: int) -> None:
    """Drop finished windows, at most once a minute per process: one indexed DELETE."""
    global _last_clean
    now = time.monotonic()
    if now - _last_clean < _CLEAN_EVERY_SECS:
        return
    _last_clean = now
    RateCounter.objects.filter(window_no__lt=window_no - 1).delete()


class RedisCounter:
    def __init__(self, url: str) -> None:
        self.url = url
        self._client = None
        self._script = None
        self._down_until = 0.0
        self._last_warning = 0.0
        self._lock = threading.Lock()

    def _connect(self):
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url, socket_connect_timeout=0.25, socket_timeout=0.5)
            self._script = self._client.register_script(_LUA)
        return self._script

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def hit(self, *, tenant_slug: str, window_no: int, limit: int, ttl_secs: int) -> int | None:
        """As db_hit; raises redis.RedisError when Redis cannot answer. Keyed by slug, not by database
        id, so that deployments or test databases sharing one Redis do not count into each other."""
        script = self._connect()
        used = script(keys=[redis_key(tenant_slug, window_no)], args=[limit, ttl_secs])
        return None if int(used) < 0 else int(used)

    def failed(self, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self._down_until = now + _REDIS_RETRY_SECS
            if now - self._last_warning >= _WARN_EVERY_SECS or self._last_warning == 0.0:
                self._last_warning = now
                logger.warning("Redis rate-limit counter unavailable (%s): counting in the database", exc)


_redis: RedisCounter | None = None


def redis_counter() -> RedisCounter | None:
    global _redis
    if not settings.REDIS_URL:
        return None
    if _redis is None or _redis.url != settings.REDIS_URL:
        _redis = RedisCounter(settings.REDIS_URL)
    return _redis


def redis_key(tenant_slug: str, window_no: int) -> str:
    return f"memcloud:rl:{tenant_slug}:{window_no}"


def hit(*, tenant_id: int, tenant_slug: str, window_no: int, limit: int, ttl_secs: int) -> tuple[int | None, str]:
    """Count one request in the configured store: (its number or None when refused, backend used)."""
    counter = redis_counter()
    if counter is not None and counter.available():
        import redis

        try:
            used = counter.hit(tenant_slug=tenant_slug, window_no=window_no, limit=limit, ttl_secs=ttl_secs)
            return used, "redis"
        except redis.RedisError as exc:
            counter.failed(exc)
    return db_hit(tenant_id=tenant_id, window_no=window_no, limit=limit), "database"
