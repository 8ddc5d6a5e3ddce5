"""Redis fixtures: a flushable test database (REDIS_URL_FOR_TESTS) and a URL where nothing listens."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def redis_url() -> str:
    """The Redis of REDIS_URL_FOR_TESTS (CI sets it). Not flushed: other runs may share it, so tests
    use unique tenant slugs and look only at their own keys."""
    url = os.environ.get("REDIS_URL_FOR_TESTS", "")
    if not url:
        pytest.skip("REDIS_URL_FOR_TESTS is not set: no Redis to test against")
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at REDIS_URL_FOR_TESTS does not answer: {exc}")
    return url


@pytest.fixture
def closed_port_url() -> str:
    """A Redis URL where nothing listens."""
    from tests.support.server import free_port

    return f"redis://127.0.0.1:{free_port()}/0"
