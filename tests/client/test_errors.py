"""Each kind of refusal arrives as its own exception type, with the server's status and message."""

import socket

import pytest
from memcloud_client import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    MemcloudClient,
    MemcloudError,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    ServiceUnavailable,
)

from tests.support.server import LiveServer

from .helpers import vec

pytestmark = pytest.mark.e2e

def test_unknown_key_is_an_authentication_error(server):
    with MemcloudClient(server.url, "mc_nobody00_" + "x" * 43) as mc, pytest.raises(AuthenticationError) as exc:
        mc.stats()
    assert exc.value.status == 401 and exc.value.message


def test_missing_key_is_an_authentication_error(server, monkeypatch):
    monkeypatch.delenv("MEMCLOUD_API_KEY", raising=False)
    with MemcloudClient(server.url) as mc, pytest.raises(AuthenticationError):
        mc.query(vec(1))


def test_key_and_url_come_from_the_environment(server, make_key, monkeypatch):
    monkeypatch.setenv("MEMCLOUD_URL", server.url)
    monkeypatch.setenv("MEMCLOUD_API_KEY", make_key())
    with MemcloudClient() as mc:
        assert mc.base_url == server.url.rstrip("/")
        assert mc.stats().episodes == 0


def test_store_over_the_quota_is_quota_exceeded_and_stores_nothing(make_client):
    mc = make_client(max_episodes=2)
    mc.store("one", vec(1), 0.5)
    mc.store("two", vec(2), 0.5)
    with pytest.raises(QuotaExceeded) as exc:
        mc.store("three", vec(3), 0.5)
    assert exc.value.status == 403 and isinstance(exc.value, PermissionDenied)
    assert "max_episodes" in exc.value.message
    with pytest.raises(QuotaExceeded):
        mc.store_batch([{"task_id": "b", "state_embedding": vec(4), "reward": 0.1}])
    assert mc.stats().episodes == 2


def test_call_outside_the_keys_scope_is_permission_denied(make_client):
    mc = make_client(scope="read")
    assert mc.query(vec(1)) == []
    with pytest.raises(PermissionDenied) as exc:
        mc.store("t", vec(1), 0.5)
    assert not isinstance(exc.value, QuotaExceeded)
    assert "write" in exc.value.message


def test_oversized_body_is_payload_too_large(limited, limited_client):
    with pytest.raises(PayloadTooLarge) as exc:
        limited_client.store("big", vec(1), 0.5, steps=["x" * limited.max_body_bytes])
    assert exc.value.status == 413


def test_refused_connection_is_an_api_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the client connects
    with MemcloudClient(f"http://127.0.0.1:{port}", "k", max_retries=1) as mc, pytest.raises(APIConnectionError) as exc:
        mc.health()
    assert not isinstance(exc.value, APITimeoutError) and exc.value.status is None


def test_silent_server_is_a_timeout():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts connections into the backlog, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with MemcloudClient(url, "k", timeout=0.3, max_retries=0) as mc, pytest.raises(APITimeoutError):
            mc.health()


def test_every_error_is_a_memcloud_error():
    for cls in (AuthenticationError, PermissionDenied, QuotaExceeded, PayloadTooLarge, APIConnectionError):
        assert issubclass(cls, MemcloudError)


def test_database_outage_is_service_unavailable_and_not_ready():
    dead = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:{_closed_port()}/nowhere"}
    with LiveServer(workers=1, env=dead) as live, MemcloudClient(live.url, "mc_whatever_" + "x" * 43, max_retries=1) as mc:
        assert mc.health() is True
        assert mc.ready() is False
        with pytest.raises(ServiceUnavailable) as exc:
            mc.stats()  # retried once after a backoff, then raised
        assert exc.value.status == 503


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
