"""Acceptance (issue: operations 1): an exact rate limit across 4 gunicorn workers, with the
database counter, with Redis, and with Redis configured but down."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.server import LiveServer
from tests.support.tenants import auth, fresh_client, unique_slug

pytestmark = pytest.mark.e2e
LIMIT, WINDOW, BURST = 50, 3600, 200


def away_from_a_window_boundary(window: int = WINDOW, margin: float = 30.0) -> None:
    """The burst must fall in one window: wait out the last seconds of the current one."""
    left = window - time.time() % window
    if left < margin:
        time.sleep(left + 0.5)


def burst(url: str, key: str, n: int = BURST) -> list[httpx.Response]:
    """n concurrent requests, each on a new connection so that all the workers take part."""
    with fresh_client(url, key) as client, ThreadPoolExecutor(max_workers=32) as pool:
        return list(pool.map(lambda _: client.get("/v1/stats"), range(n)))


def check_exact_limit(server: LiveServer) -> tuple[str, str]:
    """The burst on one tenant, then a few requests of another; returns their slugs."""
    slug, other_slug = unique_slug("rl"), unique_slug("rl")
    key = server.create_tenant(slug)
    other = server.create_tenant(other_slug)
    away_from_a_window_boundary()
    answers = burst(server.url, key)
    codes = [r.status_code for r in answers]
    assert codes.count(200) == LIMIT and codes.count(429) == BURST - LIMIT, sorted(set(codes))
    for r in answers:
        assert r.headers["X-RateLimit-Limit"] == str(LIMIT)
        assert r.headers["RateLimit-Policy"] == f'"default";q={LIMIT};w={WINDOW}'
        if r.status_code == 429:
            assert r.json()["error"].startswith("rate limit exceeded")
            assert r.headers["Retry-After"] == r.headers["X-RateLimit-Reset"]
            assert int(r.headers["Retry-After"]) >= 1 and r.headers["X-RateLimit-Remaining"] == "0"
    remaining = sorted(int(r.headers["X-RateLimit-Remaining"]) for r in answers if r.status_code == 200)
    assert remaining == list(range(LIMIT))  # every success had its own place in the count
    # The second tenant has its whole window.
    for expected in range(LIMIT - 1, LIMIT - 6, -1):
        r = httpx.get(f"{server.url}/v1/stats", headers=auth(other), timeout=30)
        assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == str(expected)
    return slug, other_slug


def limited_env(base: dict[str, str], **extra: str) -> dict[str, str]:
    return {**base, "AGENT_MEM_RATE_LIMIT": str(LIMIT), "AGENT_MEM_RATE_WINDOW_SECS": str(WINDOW), **extra}


def test_exactly_the_limit_succeeds_across_four_workers_with_the_database_counter(server_db_env):
    with LiveServer(workers=4, env=limited_env(server_db_env, REDIS_URL="")) as server:
        check_exact_limit(server)


def test_exactly_the_limit_succeeds_across_four_workers_with_redis(server_db_env, redis_url):
    import redis

    with LiveServer(workers=4, env=limited_env(server_db_env, REDIS_URL=redis_url)) as server:
        slug, other_slug = check_exact_limit(server)
    client = redis.Redis.from_url(redis_url)
    for name, expected in ((slug, LIMIT), (other_slug, 5)):  # the counts lived in Redis
        keys = client.keys(f"memcloud:rl:{name}:*")
        assert len(keys) == 1 and int(client.get(keys[0])) == expected


def test_redis_down_falls_back_to_the_database_and_says_so(server_db_env, closed_port_url):
    with LiveServer(workers=4, env=limited_env(server_db_env, REDIS_URL=closed_port_url)) as server:
        check_exact_limit(server)
        log = server.log()
    assert "Redis rate-limit counter unavailable" in log
    assert log.count("Redis rate-limit counter unavailable") <= 4  # at most once per worker, not per request
    assert "Traceback" not in log
