"""Nothing operational is public by default: /metrics answers scrapers only (token or source
network), /dashboard staff only; /health and /ready stay open and say only up/ready."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "a-scrape-token-0123456789"
REPO = Path(__file__).resolve().parents[2]


def networks(*cidrs: str) -> tuple:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


@pytest.fixture
def locked(settings):
    """Production's default: a token configured, no network allowed."""
    settings.AGENT_MEM_METRICS_TOKEN = TOKEN
    settings.AGENT_MEM_METRICS_ALLOW = ()
    return settings


def assert_forbidden(r) -> None:
    assert r.status_code == 403 and r["Content-Type"] == "application/json"
    assert "scrape token" in r.json()["error"]
    assert b"agent_mem_" not in r.content


def test_without_the_token_metrics_is_403_json(client, locked):
    assert_forbidden(client.get("/metrics"))
    assert_forbidden(client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token"))
    assert_forbidden(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x"))
    assert_forbidden(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}"))
    assert_forbidden(client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}"))
    assert_forbidden(client.get("/metrics", HTTP_AUTHORIZATION="Bearer "))
    assert_forbidden(client.get("/metrics", HTTP_X_API_KEY=TOKEN))


def test_the_token_admits_a_scrape(client, locked):
    for header in (f"Bearer {TOKEN}", f"bearer {TOKEN}"):
        r = client.get("/metrics", HTTP_AUTHORIZATION=header)
        assert r.status_code == 200 and b"agent_mem_requests_total" in r.content


def test_with_no_token_configured_no_bearer_value_matches(client, settings):
    settings.AGENT_MEM_METRICS_TOKEN = ""
    settings.AGENT_MEM_METRICS_ALLOW = ()
    assert_forbidden(client.get("/metrics"))
    assert_forbidden(client.get("/metrics", HTTP_AUTHORIZATION="Bearer "))
    assert_forbidden(client.get("/metrics", HTTP_AUTHORIZATION="Bearer x"))


def test_an_allowed_source_network_needs_no_token(client, locked):
    locked.AGENT_MEM_METRICS_ALLOW = networks("10.42.0.0/16", "fd00::/8")
    assert client.get("/metrics", REMOTE_ADDR="10.42.7.9").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="fd00::17").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::ffff:10.42.0.1").status_code == 200  # IPv4-mapped
    assert_forbidden(client.get("/metrics", REMOTE_ADDR="10.43.0.1"))
    assert_forbidden(client.get("/metrics", REMOTE_ADDR="127.0.0.1"))
    assert_forbidden(client.get("/metrics", REMOTE_ADDR="not-an-address"))
    # The forwarded-for header is the client's to write: it never admits anyone.
    assert_forbidden(client.get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="10.42.0.1"))


def _settings_in(env: dict[str, str], expression: str) -> subprocess.CompletedProcess:
    code = f"import django; django.setup(); from django.conf import settings as s; print({expression})"
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "memcloud.settings", "DJANGO_SECRET_KEY": "k" * 50}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**base, **env}, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("env", "expected"), [
    ({"DJANGO_DEBUG": "1"}, "['127.0.0.0/8', '::1/128']"),  # `make run`: curl from loopback works
    ({"DJANGO_DEBUG": "0"}, "[]"),  # production with neither set: 403 for everyone
    ({"DJANGO_DEBUG": "1", "AGENT_MEM_METRICS_TOKEN": "t"}, "[]"),  # a token set: only the token
    ({"DJANGO_DEBUG": "0", "AGENT_MEM_METRICS_ALLOW": "10.0.0.0/8, 192.168.1.7"}, "['10.0.0.0/8', '192.168.1.7/32']"),
])
def test_the_default_source_networks(env, expected):
    done = _settings_in(env, "[str(n) for n in s.AGENT_MEM_METRICS_ALLOW]")
    assert done.stdout.strip() == expected, done.stderr


def test_a_malformed_network_is_refused_at_start():
    done = _settings_in({"AGENT_MEM_METRICS_ALLOW": "10.0.0.0/33"}, "1")
    assert done.returncode != 0 and "AGENT_MEM_METRICS_ALLOW must be comma-separated CIDRs" in done.stderr


def test_health_and_ready_stay_open_and_say_only_up_or_ready(client, locked):
    r = client.get("/health")
    assert r.status_code == 200 and r.content == b"ok"
    r = client.get("/ready")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
