"""tenants/permissions.py (docs/api.md §8): what each key scope may call on /v1, and every /v1 view
declares its scope (DRF test client, real database)."""

from __future__ import annotations

import pytest

from tenants.services import key_issue
from tests.episodes.bodies import ep, vec
from tests.episodes.helpers import client_for, store

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_sweep_from_requests")]


WRITE_CALLS = [
    ("post", "/v1/episodes", lambda eid: ep()),
    ("post", "/v1/episodes/batch", lambda eid: {"episodes": [ep()]}),
    ("patch", "/v1/episodes/{eid}", lambda eid: {"reward": 2.0}),
    ("delete", "/v1/episodes/{eid}", None),
    ("post", "/v1/episodes/delete", lambda eid: {"ids": [eid]}),
    ("post", "/v1/prune/older-than", lambda eid: {"timestamp_cutoff_ms": 0}),
    ("post", "/v1/prune/keep-newest", lambda eid: {"n": 100}),
    ("post", "/v1/prune/keep-highest-reward", lambda eid: {"n": 100}),
]
READ_CALLS = [
    ("get", "/v1/episodes", None),
    ("get", "/v1/episodes/{eid}", None),
    ("post", "/v1/query", lambda eid: {"query_embedding": vec(1.0)}),
    ("get", "/v1/stats", None),
]


def call(client, method, path, body, eid):
    url = path.format(eid=eid)
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, body(eid), format="json")


@pytest.mark.parametrize("scope", ["read", "write", "admin"])
def test_scopes(api, tenant, scope):
    t, admin_key = tenant
    eid = store(api.as_key(admin_key), ep())[0]
    _, raw = key_issue(tenant=t, scope=scope)
    client = client_for(raw)
    for method, path, body in READ_CALLS:
        r = call(client, method, path, body, eid)
        assert r.status_code == 200, (scope, path, r.content)
    for method, path, body in WRITE_CALLS:
        r = call(client, method, path, body, eid)
        if scope == "read":
            assert r.status_code == 403, (path, r.content)
            assert "'write' scope" in r.json()["error"]
        else:
            assert r.status_code in (200, 201, 404), (scope, path, r.content)
    if scope == "read":
        assert client.get(f"/v1/episodes/{eid}").json()["reward"] == 1.0
        assert client.head("/v1/episodes").status_code == 200  # HEAD needs what GET needs


def test_every_v1_view_declares_its_scope():
    """A view without an explicit scope would fall back to admin: list them so none is forgotten."""
    from django.urls import get_resolver

    from tenants.api import TenantApi

    expected = {
        "episodes": {"GET": "read", "POST": "write"},
        "episodes-batch": "write",
        "episodes-delete": "write",
        "episode-detail": {"GET": "read", "DELETE": "write", "PATCH": "write", "PUT": "write"},
        "query": "read",
        "prune-older-than": "write",
        "prune-keep-newest": "write",
        "prune-keep-highest-reward": "write",
        "stats": "read",
    }
    found = {}
    for pattern in get_resolver().url_patterns:
        for sub in getattr(pattern, "url_patterns", []):
            view = getattr(sub.callback, "view_class", None)
            if view is not None and issubclass(view, TenantApi):
                found[sub.name] = view.required_scope
    for name, scope in expected.items():
        assert found[name] == scope, name
    # Routes added later (save, load, checkpoint, snapshots) must declare admin or read themselves.
    for name, scope in found.items():
        if name not in expected:
            assert scope in ("read", "admin") or isinstance(scope, dict), name
