"""Isolation, hostile input and faults for the endpoints beyond the episode core: listing, PATCH,
delete by ids or filter (docs/api.md §8), snapshots and checkpoints (section 4), rate limits with
Redis unreachable (section 5). Each test runs when its endpoint or setting is served."""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import LiveServer, free_port
from tests.support.tenants import auth, unique_slug

from .support import assert_client_error, error_message, record

pytestmark = pytest.mark.e2e

DIM = 4
TALLY: collections.Counter = collections.Counter()


def episode(**fields) -> dict:
    return {"task_id": "private", "state_embedding": [1, 2, 3, 4], "reward": 1.0, **fields}


@pytest.fixture(scope="module")
def pair(memcloud_server) -> Iterator[dict]:
    slug_a, slug_b = unique_slug("more-a"), unique_slug("more-b")
    key_a = memcloud_server.create_tenant(slug_a, "--dim", str(DIM))
    key_b = memcloud_server.create_tenant(slug_b, "--dim", str(DIM))
    a = httpx.Client(base_url=memcloud_server.url, headers=auth(key_a), timeout=30)
    b = httpx.Client(base_url=memcloud_server.url, headers=auth(key_b), timeout=30)
    ids_a = a.post("/v1/episodes/batch", json={"episodes": [episode(tags=["x"]) for _ in range(5)]}).json()["ids"]
    yield {"a": a, "b": b, "ids_a": ids_a, "slug_a": slug_a, "slug_b": slug_b}
    a.close()
    b.close()
    record("more_endpoints", requests=TALLY["requests"], server_errors=TALLY["server_errors"], leaks=TALLY["leaks"],
           command="pytest tests/reliability/test_more_endpoints.py")


def call(client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    response = client.request(method, path, **kwargs)
    TALLY["requests"] += 1
    TALLY["server_errors"] += response.status_code >= 500
    assert response.status_code < 500, (method, path, response.status_code, response.text[:300])
    if response.status_code >= 400:
        error_message(response)
    return response


def served(client: httpx.Client, method: str, path: str) -> bool:
    """False when the path is the catch-all JSON 404 or 405 (the endpoint has not landed)."""
    response = client.request(method, path, json={} if method != "GET" else None)
    return not (response.status_code in (404, 405) and ("no such endpoint" in response.text
                                                        or response.status_code == 405))


def a_is_intact(t: dict) -> None:
    assert call(t["a"], "GET", "/v1/stats").json()["episodes"] == len(t["ids_a"])
    for eid in t["ids_a"]:
        got = call(t["a"], "GET", f"/v1/episodes/{eid}").json()
        assert got["task_id"] == "private" and got["reward"] == 1.0, got


# ----- listing, PATCH, delete by ids or filter -----
def test_listing_shows_only_own_episodes(pair):
    if not served(pair["b"], "GET", "/v1/episodes"):
        pytest.skip("GET /v1/episodes is not served yet")
    listed = call(pair["b"], "GET", "/v1/episodes", params={"limit": 1000}).json()
    TALLY["leaks"] += len(listed["episodes"])
    assert listed["episodes"] == [] and listed["next_cursor"] is None
    mine = call(pair["a"], "GET", "/v1/episodes", params={"limit": 2}).json()
    assert len(mine["episodes"]) == 2 and mine["next_cursor"]
    # A's cursor in B's hands pages through B's episodes only.
    stolen = call(pair["b"], "GET", "/v1/episodes", params={"limit": 2, "cursor": mine["next_cursor"]})
    assert stolen.status_code in (200, 400)
    if stolen.status_code == 200:
        TALLY["leaks"] += len(stolen.json()["episodes"])
        assert stolen.json()["episodes"] == []


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": -1}, {"limit": 1001}, {"limit": "x"},
                                    {"limit": 2**64}, {"cursor": "garbage"}, {"cursor": "\u202e\U0001f9e0"},
                                    {"min_reward": "NaN"}, {"min_reward": "inf"}, {"time_after": str(2**64)},
                                    {"tags_any": "a" * 200}, {"limit": "1e3"}, {"bogus": 1}])
def test_listing_rejects_bad_parameters(pair, params):
    if not served(pair["a"], "GET", "/v1/episodes"):
        pytest.skip("GET /v1/episodes is not served yet")
    response = call(pair["a"], "GET", "/v1/episodes", params=params)
    assert_client_error(response, field=next(iter(params)), status=400)


def test_patch_of_another_tenants_episode_is_404(pair):
    if not served(pair["b"], "PATCH", f"/v1/episodes/{uuid.uuid4()}"):
        pytest.skip("PATCH /v1/episodes/{id} is not served yet")
    for body in ({"reward": -9.0}, {"metadata": {"owned": True}}, {"tags": ["pwned"]}, {"task_id": "pwned"}):
        response = call(pair["b"], "PATCH", f"/v1/episodes/{pair['ids_a'][0]}", json=body)
        TALLY["leaks"] += response.status_code != 404
        assert response.status_code == 404
    a_is_intact(pair)


@pytest.mark.parametrize("body", [{"reward": "NaN"}, {"state_embedding": [1, 2, 3, 4]}, {"expires_at": 2**64},
                                  {"tags": ["a"] * 65 + [str(i) for i in range(65)]}, {"metadata": {"k": "a\u0000"}},
                                  {"metadata": []}, {"task_id": ""}, {"bogus": 1}, {"metadata_merge": "x"}])
def test_patch_rejects_bad_bodies_and_changes_nothing(pair, body):
    if not served(pair["a"], "PATCH", f"/v1/episodes/{uuid.uuid4()}"):
        pytest.skip("PATCH /v1/episodes/{id} is not served yet")
    response = call(pair["a"], "PATCH", f"/v1/episodes/{pair['ids_a'][1]}", json=body)
    assert_client_error(response, field=next(iter(body)), status=400)
    a_is_intact(pair)


def test_delete_by_ids_or_filter_never_crosses_tenants(pair):
    if not served(pair["b"], "POST", "/v1/episodes/delete"):
        pytest.skip("POST /v1/episodes/delete is not served yet")
    assert call(pair["b"], "POST", "/v1/episodes/delete", json={"ids": pair["ids_a"]}).json() == {"removed": 0}
    assert call(pair["b"], "POST", "/v1/episodes/delete",
                json={"filter": {"tags_any": ["x"]}}).json() == {"removed": 0}
    assert call(pair["b"], "POST", "/v1/episodes/delete",
                json={"filter": {"task_id_prefix": "private"}}).json() == {"removed": 0}
    for body in ({}, {"filter": {}}, {"ids": ["nope"]}, {"ids": pair["ids_a"], "filter": {"tags_any": ["x"]}},
                 {"filter": {"min_reward": "NaN"}}):
        assert 400 <= call(pair["b"], "POST", "/v1/episodes/delete", json=body).status_code < 500
    a_is_intact(pair)


# ----- snapshots -----
TRAVERSALS = ["../x", "..", "a/b", "a\\b", "/etc/passwd", ".hidden", "x" * 129, "", "a\u0000b", "snap..", "%2e%2e",
              "\u202esnap", "snap\n"]


def test_snapshots_are_per_tenant(pair):
    if not served(pair["b"], "GET", "/v1/snapshots"):
        pytest.skip("snapshots are not served yet")
    name = f"snap-{uuid.uuid4().hex[:8]}"
    saved = call(pair["a"], "POST", "/v1/save", json={"path": name}).json()
    assert saved == {"ok": True, "path": name, "episodes": len(pair["ids_a"])}
    listed = call(pair["b"], "GET", "/v1/snapshots").json()["snapshots"]
    TALLY["leaks"] += any(s["path"] == name for s in listed)
    assert all(s["path"] != name for s in listed)
    response = call(pair["b"], "POST", "/v1/load", json={"path": name})
    TALLY["leaks"] += response.status_code != 404
    assert response.status_code == 404
    for sneaky in (f"../{pair['slug_a']}/snapshots/{name}", f"../../{pair['slug_a']}/snapshots/{name}"):
        assert_client_error(call(pair["b"], "POST", "/v1/load", json={"path": sneaky}), field="path", status=400)
    assert call(pair["b"], "GET", "/v1/stats").json()["episodes"] == 0
    # B saving under the same name writes B's own snapshot; A's still loads A's episodes.
    assert call(pair["b"], "POST", "/v1/save", json={"path": name}).json()["episodes"] == 0
    assert call(pair["a"], "POST", "/v1/load", json={"path": name}).json() == {"ok": True, "episodes": len(pair["ids_a"])}
    a_is_intact(pair)


@pytest.mark.parametrize("name", TRAVERSALS)
def test_snapshot_names_that_are_not_names_are_400(pair, name):
    if not served(pair["a"], "GET", "/v1/snapshots"):
        pytest.skip("snapshots are not served yet")
    for path in ("/v1/save", "/v1/load"):
        assert_client_error(call(pair["a"], "POST", path, json={"path": name}), field="path", status=400)
    a_is_intact(pair)


@pytest.fixture
def blocked_data_dir_server(server_db_env, tmp_path) -> Iterator[tuple[LiveServer, str, Path]]:
    """A data dir that cannot be written: a plain file stands where the directory should be
    (a permission bit would not stop root)."""
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    server = LiveServer(workers=1, env={**server_db_env, "AGENT_MEM_DATA_DIR": str(blocker)})
    key = server.create_tenant(unique_slug("rodir"), "--dim", str(DIM))
    with server:
        yield server, key, blocker


def test_unwritable_data_dir_on_save_and_checkpoint(blocked_data_dir_server):
    server, key, blocker = blocked_data_dir_server
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=30) as c:
        if not served(c, "GET", "/v1/snapshots"):
            pytest.skip("snapshots are not served yet")
        assert call(c, "POST", "/v1/episodes", json=episode()).status_code == 201
        for path, body in (("/v1/save", {"path": "snap"}), ("/v1/checkpoint", {})):
            response = c.post(path, json=body)  # 503 is the contract here: the server cannot store it
            TALLY["requests"] += 1
            TALLY["server_errors"] += response.status_code >= 500 and response.status_code != 503
            assert response.status_code == 503, (path, response.status_code, response.text)
            assert "not writable" in error_message(response) and str(blocker) not in response.text
        listing = call(c, "GET", "/v1/snapshots")
        assert listing.status_code in (200, 503)
        if listing.status_code == 200:
            assert listing.json()["snapshots"] == []
        assert call(c, "GET", "/v1/stats").json()["episodes"] == 1
    assert blocker.read_text() == "not a directory"


# ----- rate limits with Redis unreachable -----
def test_rate_limit_falls_back_when_redis_is_unreachable(server_db_env):
    closed = free_port()  # nothing listens there
    limit = 8
    server = LiveServer(workers=2, env={**server_db_env, "REDIS_URL": f"redis://127.0.0.1:{closed}/0",
                                        "AGENT_MEM_RATE_LIMIT": str(limit), "AGENT_MEM_RATE_WINDOW_SECS": "3600"})
    key = server.create_tenant(unique_slug("noredis"), "--dim", str(DIM))
    with server, httpx.Client(base_url=server.url, headers=auth(key), timeout=30,
                              limits=httpx.Limits(max_keepalive_connections=0)) as c:
        first = call(c, "GET", "/v1/stats")
        if "X-RateLimit-Limit" not in first.headers:
            pytest.skip("rate limiting is not served yet")
        statuses = [first.status_code] + [call(c, "GET", "/v1/stats").status_code for _ in range(limit + 3)]
    assert statuses.count(200) == limit and statuses.count(429) == 4, statuses
