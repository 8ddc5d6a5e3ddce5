"""episodes/cursors.py through GET /v1/episodes (docs/api.md §8): a cursor is bound to its tenant and
filters and cannot be forged (DRF test client, real database)."""

from __future__ import annotations

import pytest

from tests.episodes.bodies import ep
from tests.episodes.helpers import client_for, store

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_sweep_from_requests")]


@pytest.fixture
def client(api, tenant):
    return api.as_key(tenant[1])


def test_cursor_is_bound_to_tenant_and_filters(client, api, other_tenant):
    store(client, *[ep(timestamp=t, tags=["x"]) for t in range(5)])
    cursor = client.get("/v1/episodes", {"limit": 2, "tags_any": "x"}).json()["next_cursor"]
    assert cursor
    # Same filters given as a set in another order: the same listing.
    assert client.get("/v1/episodes", {"limit": 2, "tags_any": "x", "cursor": cursor}).status_code == 200
    r = client.get("/v1/episodes", {"limit": 2, "cursor": cursor})
    assert r.status_code == 400 and "other filters" in r.json()["error"]
    forged = cursor[:-3] + ("abc" if not cursor.endswith("abc") else "xyz")
    r = client.get("/v1/episodes", {"limit": 2, "tags_any": "x", "cursor": forged})
    assert r.status_code == 400 and r.json()["error"].startswith("cursor:")
    rival = client_for(other_tenant[1])
    store(rival, *[ep(timestamp=t, tags=["x"]) for t in range(5)])
    r = rival.get("/v1/episodes", {"limit": 2, "tags_any": "x", "cursor": cursor})
    assert r.status_code == 400 and "another tenant" in r.json()["error"]
