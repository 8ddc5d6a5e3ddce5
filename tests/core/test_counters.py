"""core/counters.py: the shared rate-limit counters (docs/api.md §5) exact under concurrent hits, in Redis
when configured, on the database while Redis is down, and in UNLOGGED tables on PostgreSQL."""

from __future__ import annotations

import logging
import threading

import pytest

from core.models import RateCounter
from tenants.throttling import rate_limit_hit

pytestmark = pytest.mark.django_db(transaction=True)


def stats(client):
    return client.get("/v1/stats")


def test_concurrent_hits_never_exceed_the_limit(make_tenant):
    from django.db import connection

    tenant, _ = make_tenant("limited", rate_limit=25)
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            for _ in range(10):
                state = rate_limit_hit(tenant=tenant, now=6000.0)
                with lock:
                    results.append(state.allowed)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 25 and len(results) == 80


def test_redis_counts_when_configured(api, make_tenant, settings, redis_url):
    import redis

    from tests.support.tenants import unique_slug

    settings.REDIS_URL = redis_url
    tenant, key = make_tenant(unique_slug("limited"), rate_limit=2)
    client = api.as_key(key)
    assert [stats(client).status_code for _ in range(4)] == [200, 200, 429, 429]
    assert not RateCounter.objects.exists()
    server = redis.Redis.from_url(redis_url)
    keys = server.keys(f"memcloud:rl:{tenant.slug}:*")
    assert len(keys) == 1 and int(server.get(keys[0])) == 2 and 0 < server.ttl(keys[0]) <= 65


def test_redis_down_falls_back_to_the_database_and_warns_once(api, make_tenant, settings, closed_port_url,
                                                              caplog):
    settings.REDIS_URL = closed_port_url
    tenant, key = make_tenant("limited", rate_limit=3)
    client = api.as_key(key)
    with caplog.at_level(logging.WARNING, logger="memcloud.ratelimit"):
        assert [stats(client).status_code for _ in range(5)] == [200, 200, 200, 429, 429]
    assert RateCounter.objects.get(tenant=tenant).count == 3
    warnings = [r for r in caplog.records if r.name == "memcloud.ratelimit"]
    assert len(warnings) == 1 and "database" in warnings[0].getMessage()


def test_counter_tables_are_unlogged_on_postgresql():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("UNLOGGED tables exist on PostgreSQL only")
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, relpersistence FROM pg_class WHERE relname IN "
                       "('ops_rate_counter', 'ops_usage_minute')")
        assert dict(cursor.fetchall()) == {"ops_rate_counter": "u", "ops_usage_minute": "u"}
