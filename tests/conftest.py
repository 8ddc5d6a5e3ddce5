"""Shared fixtures: in-process tenants for unit tests, and a real gunicorn for end-to-end tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.database import drop_database, fresh_database_env
from tests.support.server import LiveServer
from tests.support.tenants import RIVAL_TASK_ID

pytest_plugins = ["tests.support.redis", "tests.support.embedding_server", "tests.support.statement_audit"]  # redis_url, closed_port_url; embedding_server

os.environ.setdefault("AGENT_MEM_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "data", "test"))


@pytest.fixture
def make_tenant(db):
    """Create a tenant and an admin-scope key in the test database: (tenant, raw_key)."""
    from tenants.services import key_issue, tenant_create

    def make(slug: str = "acme", *, dim: int = 8, metric: str = "cosine", scope: str = "admin", **opts):
        tenant = tenant_create(slug=slug, dim=dim, metric=metric, **opts)
        _, raw = key_issue(tenant=tenant, scope=scope)
        return tenant, raw

    return make


@pytest.fixture
def tenant(make_tenant, other_tenant):
    """The tenant "acme": (tenant, admin key). The rival (`other_tenant`) always exists beside it,
    with an episode of its own, so that every test runs where there is someone else's data to leak."""
    return make_tenant("acme")


@pytest.fixture
def other_tenant(make_tenant):
    """The second tenant "rival": (tenant, admin key), holding one episode (task_id RIVAL_TASK_ID)."""
    from episodes.services import episodes_store

    rival, raw = make_tenant("rival")
    embedding = [0.0] * rival.dim
    embedding[0] = 1.0
    episodes_store(tenant=rival, episodes=[{"task_id": RIVAL_TASK_ID, "state_embedding": embedding, "reward": 1.0}])
    return rival, raw


@pytest.fixture
def no_sweep_from_requests(settings):
    """Sweeps run only where a test asks for one (a request's end could run it at any time)."""
    settings.AGENT_MEM_EXPIRE_INTERVAL_SECS = 0


@pytest.fixture
def api():
    """DRF's test client; `api.as_key(raw)` sets the Authorization header."""
    from rest_framework.test import APIClient

    client = APIClient()

    def as_key(raw: str) -> APIClient:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    client.as_key = as_key
    return client


@pytest.fixture(autouse=True)
def _fresh_index_cache():
    """Each test starts with an empty per-process index cache and key memo (test databases are
    recreated)."""
    from episodes.cache import cache
    from tenants import key_memo

    cache.clear()
    key_memo.clear()
    yield
    cache.clear()
    key_memo.clear()


@pytest.fixture(scope="session")
def server_db_env() -> Iterator[dict[str, str]]:
    """A migrated database shared by the session's end-to-end servers."""
    env = fresh_database_env("e2e")
    LiveServer(env=env).migrate()
    yield env
    drop_database(env)


@pytest.fixture(scope="session")
def memcloud_server(server_db_env) -> Iterator[LiveServer]:
    """A real gunicorn with 3 workers on the session's end-to-end database."""
    server = LiveServer(workers=3, env=server_db_env)
    server.start()
    yield server
    server.stop()
