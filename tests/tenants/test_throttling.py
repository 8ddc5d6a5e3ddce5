"""Per-tenant fixed-window rate limits in process (SPEC sections 5, 8, 9)."""

from __future__ import annotations

import logging
import re
import threading

import pytest

from core.models import RateCounter
from tenants.throttling import rate_limit_hit

pytestmark = pytest.mark.django_db(transaction=True)


def stats(client):
    return client.get("/v1/stats")


def test_it_answers_429_after_the_limit_with_every_header(api, make_tenant):
    _, key = make_tenant("limited", rate_limit=3)
    client = api.as_key(key)
    seen = [stats(client) for _ in range(3)]
    assert [r.status_code for r in seen] == [200, 200, 200]
    assert [r["X-RateLimit-Remaining"] for r in seen] == ["2", "1", "0"]
    assert all(r["X-RateLimit-Limit"] == "3" for r in seen)
    refused = stats(client)
    assert refused.status_code == 429
    assert "rate limit" in refused.json()["error"]
    reset = int(refused["X-RateLimit-Reset"])
    assert 1 <= reset <= 60 and refused["Retry-After"] == str(reset)
    assert refused["X-RateLimit-Remaining"] == "0"
    assert refused["RateLimit-Policy"] == '"default";q=3;w=60'
    assert re.fullmatch(r'"default";r=0;t=\d+', refused["RateLimit"])
    assert "Retry-After" not in seen[0]
    assert seen[0]["RateLimit"] == f'"default";r=2;t={seen[0]["X-RateLimit-Reset"]}'


def test_refused_requests_do_not_count(api, make_tenant):
    tenant, key = make_tenant("limited", rate_limit=2)
    client = api.as_key(key)
    for _ in range(6):
        stats(client)
    assert RateCounter.objects.get(tenant=tenant).count == 2


def test_another_tenant_is_unaffected(api, make_tenant):
    _, key = make_tenant("limited", rate_limit=1)
    _, other = make_tenant("other", rate_limit=5)
    assert stats(api.as_key(key)).status_code == 200
    assert stats(api.as_key(key)).status_code == 429
    r = stats(api.as_key(other))
    assert r.status_code == 200 and r["X-RateLimit-Remaining"] == "4"


def test_the_setting_applies_and_a_tenant_limit_overrides_it(api, make_tenant, settings):
    settings.AGENT_MEM_RATE_LIMIT = 7
    settings.AGENT_MEM_RATE_WINDOW_SECS = 30
    _, key = make_tenant("plain")
    _, own = make_tenant("own", rate_limit=2)
    r = stats(api.as_key(key))
    assert r["X-RateLimit-Limit"] == "7" and r["RateLimit-Policy"] == '"default";q=7;w=30'
    assert r.json()["rate_limit"] == 7
    r = stats(api.as_key(own))
    assert r["X-RateLimit-Limit"] == "2" and r.json()["rate_limit"] == 2


def test_without_a_limit_nothing_is_counted_and_no_header_sent(api, tenant, settings):
    settings.AGENT_MEM_RATE_LIMIT = None
    _, key = tenant
    r = stats(api.as_key(key))
    assert r.status_code == 200 and r.json()["rate_limit"] is None
    assert not any(h.lower().startswith(("x-ratelimit", "ratelimit", "retry-after")) for h in r.headers)
    assert not RateCounter.objects.exists()


def test_errors_after_authentication_count_and_carry_headers(api, make_tenant):
    tenant, key = make_tenant("limited", rate_limit=10)
    client = api.as_key(key)
    r = client.post("/v1/query", {"query_embedding": [1.0]}, format="json")  # wrong dim: 400
    assert r.status_code == 400 and r["X-RateLimit-Remaining"] == "9"
    assert client.get("/v1/episodes/00000000-0000-0000-0000-000000000000").status_code == 404
    assert RateCounter.objects.get(tenant=tenant).count == 2


def test_a_request_refused_for_its_scope_counts(api, make_tenant):
    tenant, key = make_tenant("limited", rate_limit=10, scope="read")
    r = api.as_key(key).post("/v1/prune/keep-newest", {"n": 1}, format="json")
    assert r.status_code == 403 and r["X-RateLimit-Remaining"] == "9"


def test_unauthenticated_requests_do_not_count(api, make_tenant):
    make_tenant("limited", rate_limit=1)
    r = api.as_key("mc_nothere0_secret").get("/v1/stats")
    assert r.status_code == 401 and "X-RateLimit-Limit" not in r
    assert not RateCounter.objects.exists()


def test_the_window_is_aligned_to_the_clock(make_tenant):
    tenant, _ = make_tenant("limited", rate_limit=2)
    assert rate_limit_hit(tenant=tenant, now=1200.0).reset_secs == 60
    assert rate_limit_hit(tenant=tenant, now=1259.2).reset_secs == 1
    assert not rate_limit_hit(tenant=tenant, now=1259.9).allowed
    fresh = rate_limit_hit(tenant=tenant, now=1260.0)  # next window: a fresh count
    assert fresh.allowed and fresh.used == 1 and fresh.reset_secs == 60


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
