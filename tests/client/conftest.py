"""Fixtures for the client tests: real gunicorn servers and fresh tenants made by the management commands."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from memcloud_client import MemcloudClient

from tests.support.server import LiveServer
from tests.support.tenants import auth

from .helpers import DIM


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(feature): xfail when the server lacks that contract feature (docs/api.md)")


@dataclass
class Tenants:
    """Hands out fresh tenants, created in batches per kind (one manage.py process per batch)."""

    server: LiveServer
    batch: int = 16
    spare: dict[tuple, list[str]] = field(default_factory=lambda: defaultdict(list))

    def key(self, *, dim: int = DIM, scope: str = "admin", **opts: int) -> str:
        args = ("--dim", str(dim), *(a for k, v in sorted(opts.items()) for a in (f"--{k.replace('_', '-')}", str(v))))
        kind = (args, scope)
        if not self.spare[kind]:
            many = self.batch if not opts and scope == "admin" else 1
            specs = [(f"cl-{uuid.uuid4().hex[:12]}", args, scope) for _ in range(many)]
            self.spare[kind] = self.server.create_tenants(specs)
        return self.spare[kind].pop()


@pytest.fixture(scope="session")
def server(memcloud_server: LiveServer) -> LiveServer:
    return memcloud_server


@pytest.fixture(scope="session")
def tenants(server: LiveServer) -> Tenants:
    return Tenants(server)


@pytest.fixture
def make_key(tenants: Tenants) -> Callable[..., str]:
    """make_key(dim=8, scope="admin", max_episodes=..., rate_limit=...) -> a key of a fresh tenant."""
    return tenants.key


@pytest.fixture
def make_client(server: LiveServer, make_key) -> Iterator[Callable[..., MemcloudClient]]:
    """make_client(key=None, *, batch_size=..., max_retries=..., timeout=..., **tenant_opts)."""
    made: list[MemcloudClient] = []

    def make(key: str | None = None, *, batch_size: int = 1000, max_retries: int = 3, timeout: float = 10.0,
             **tenant_opts) -> MemcloudClient:
        mc = MemcloudClient(server.url, key or make_key(**tenant_opts), batch_size=batch_size,
                            max_retries=max_retries, timeout=timeout)
        made.append(mc)
        return mc

    yield make
    for mc in made:
        mc.close()


@pytest.fixture
def client(make_client) -> MemcloudClient:
    return make_client()


@pytest.fixture
def other_client(make_client) -> MemcloudClient:
    return make_client()


@dataclass
class LimitedServer:
    """A second server with small limits, to meet them quickly: batch, body size, rate window."""

    server: LiveServer
    tenants: Tenants
    max_batch: int = 5
    max_body_bytes: int = 65536
    window: int = 2  # seconds
    dim: int = DIM

    @property
    def url(self) -> str:
        return self.server.url

    def make_key(self, **opts: int) -> str:
        return self.tenants.key(**opts)


@pytest.fixture(scope="session")
def limited(server_db_env) -> Iterator[LimitedServer]:
    live = LiveServer(workers=2, env=server_db_env)
    limits = LimitedServer(server=live, tenants=Tenants(live))
    live.env.update({"AGENT_MEM_MAX_BATCH": str(limits.max_batch), "AGENT_MEM_RATE_WINDOW_SECS": str(limits.window),
                     "AGENT_MEM_MAX_BODY_BYTES": str(limits.max_body_bytes)})
    with live:
        yield limits


@pytest.fixture
def make_limited_client(limited: LimitedServer) -> Iterator[Callable[..., MemcloudClient]]:
    made: list[MemcloudClient] = []

    def make(key: str | None = None, *, max_retries: int = 3, **tenant_opts) -> MemcloudClient:
        mc = MemcloudClient(limited.url, key or limited.make_key(**tenant_opts), max_retries=max_retries)
        made.append(mc)
        return mc

    yield make
    for mc in made:
        mc.close()


@pytest.fixture
def limited_client(make_limited_client) -> MemcloudClient:
    return make_limited_client()


# Features of the contract (docs/api.md) that may not be served yet: a test that needs one is an
# expected failure until the server answers it, and a real test from then on.
PROBES: dict[str, Callable[[httpx.Client, Callable[..., str]], bool]] = {
    "list": lambda http, key: _served(http.get("/v1/episodes", params={"limit": 1}, headers=auth(key()))),
    "patch": lambda http, key: http.patch(f"/v1/episodes/{uuid.uuid4()}", json={"reward": 1.0},
                                          headers=auth(key())).status_code != 405,  # 404: no such episode
    "delete_many": lambda http, key: http.post("/v1/episodes/delete", json={"ids": []},
                                               headers=auth(key())).status_code in (200, 400),
    "snapshots": lambda http, key: _served(http.get("/v1/snapshots", headers=auth(key()))),
    "checkpoint": lambda http, key: _served(http.post("/v1/checkpoint", json={}, headers=auth(key()))),
    "rate_limit": lambda http, key: _limited_after_one(http, key(rate_limit=1)),
}


def _served(response: httpx.Response) -> bool:
    return response.status_code == 200  # an admin key on an empty tenant: nothing else to refuse


def _limited_after_one(http: httpx.Client, key: str) -> bool:
    return [http.get("/v1/stats", headers=auth(key)).status_code for _ in range(3)].count(429) >= 1


@pytest.fixture(scope="session")
def server_features(request) -> Callable[[str, str], bool]:
    seen: dict[tuple[str, str], bool] = {}

    def has(feature: str, where: str) -> bool:
        if (feature, where) not in seen:
            live = request.getfixturevalue(where)
            url, keys = (live.url, request.getfixturevalue("tenants").key) if where == "server" else (
                live.url, live.make_key)
            with httpx.Client(base_url=url, timeout=10) as http:
                seen[feature, where] = PROBES[feature](http, keys)
        return seen[feature, where]

    return has


@pytest.fixture(autouse=True)
def _needs(request, server_features) -> None:
    for mark in request.node.iter_markers("needs"):
        feature, where = mark.args[0], mark.kwargs.get("on", "server")
        if not server_features(feature, where):
            pytest.xfail(f"the server does not serve '{feature}' (docs/api.md) yet: this test runs once it does")
