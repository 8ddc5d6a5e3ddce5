"""tenants/throttling.py: per-tenant fixed-window rate limits in process (docs/api.md §5, §8, §9); the
counters behind them: tests/core/test_counters.py."""

from __future__ import annotations

import re

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
