"""docs/api.md §8 through real gunicorn workers: paging under concurrent writes, PATCH seen by
every worker, TTL expiry and both sweeps, read-only keys, key rotation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.support.database import drop_database, fresh_database_env
from tests.support.server import LiveServer
from tests.support.tenants import auth, episode, fresh_client, unique_slug

pytestmark = pytest.mark.e2e
DIM = 8
WAIT = 30  # seconds: bound on waiting for an event (expiry, a sweep, a writer's next step)


@pytest.fixture(scope="module")
def quiet_db() -> Iterator[dict[str, str]]:
    """A database of this module's own: the session server sweeps expired rows of every tenant
    in its database, which would race the tests that expect `manage.py expire` to do it."""
    env = fresh_database_env("features")
    LiveServer(env=env).migrate()
    yield env
    drop_database(env)


@pytest.fixture(scope="module")
def quiet_server(quiet_db) -> Iterator[LiveServer]:
    """Three workers that never sweep by themselves."""
    server = LiveServer(workers=3, env={**quiet_db, "AGENT_MEM_EXPIRE_INTERVAL_SECS": "0"})
    server.start()
    yield server
    server.stop()


def wait_for(check, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def query_ids(client: httpx.Client, **flt) -> list[str]:
    r = client.post("/v1/query", json={"query_embedding": [1.0] + [0.0] * (DIM - 1), "top_k": 1000, **flt})
    assert r.status_code == 200, r.text
    return [h["id"] for h in r.json()["episodes"]]


def list_ids(client: httpx.Client, **params) -> list[str]:
    ids, cursor = [], None
    while True:
        r = client.get("/v1/episodes", params={"limit": 1000, **params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        ids += [e["id"] for e in r.json()["episodes"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return ids


def row_count(server: LiveServer, slug: str) -> int:
    """Rows physically in the database, expired or not."""
    return int(server.manage("shell", "-c", "from episodes.models import Episode; "
                                            f"print(Episode.objects.filter(tenant__slug='{slug}').count())").split()[-1])


# ----- acceptance 1 -----
class Writers:
    """Two threads: one stores episodes at random timestamps (before and after the reader's
    position), one deletes the churn set. `steps` counts finished operations of each."""

    def __init__(self, url: str, key: str, churn: list[str], rng: np.random.Generator, span: int):
        self.url, self.key, self.span = url, key, span
        self.churn = list(churn)
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.steps = [0, 0]
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.rng = rng
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._store), threading.Thread(target=self._delete)]

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def _store(self) -> None:
        rng = np.random.default_rng(7)
        with fresh_client(self.url, self.key) as client:
            while not self.stop.is_set():
                batch = [episode(DIM, rng, timestamp=int(t)) for t in rng.integers(0, self.span, size=20)]
                r = client.post("/v1/episodes/batch", json={"episodes": batch})
                if r.status_code != 201:
                    self.errors.append(f"store: {r.status_code} {r.text}")
                    return
                with self.lock:
                    self.created += r.json()["ids"]
                    self.churn += r.json()["ids"][:10]  # half of what is stored is deleted again
                self.steps[0] += 1

    def _delete(self) -> None:
        with fresh_client(self.url, self.key) as client:
            while not self.stop.is_set():
                with self.lock:
                    victims, self.churn = self.churn[:7], self.churn[7:]
                if not victims:
                    time.sleep(0.01)
                    continue
                if self.steps[1] % 2:
                    r = client.post("/v1/episodes/delete", json={"ids": victims})
                else:
                    r = client.delete(f"/v1/episodes/{victims[0]}")
                    victims = victims[:1] if r.status_code == 200 else []
                    with self.lock:
                        self.churn = victims[1:] + self.churn
                if r.status_code != 200:
                    self.errors.append(f"delete: {r.status_code} {r.text}")
                    return
                self.deleted += victims
                self.steps[1] += 1


def test_paging_5000_with_limit_97_while_two_writers_store_and_delete(quiet_server):
    slug = unique_slug("page")
    key = quiet_server.create_tenant(slug, "--dim", str(DIM))
    rng = np.random.default_rng(97)
    span = 1500  # many equal timestamps: the store-order tie-break matters
    stable, churn = [], []
    with fresh_client(quiet_server.url, key) as client:
        for _ in range(5):
            batch = [episode(DIM, rng, timestamp=int(t)) for t in rng.integers(0, span, size=1000)]
            stable += client.post("/v1/episodes/batch", json={"episodes": batch}).json()["ids"]
        batch = [episode(DIM, rng, timestamp=int(t)) for t in rng.integers(0, span, size=600)]
        churn = client.post("/v1/episodes/batch", json={"episodes": batch}).json()["ids"]
        assert len(stable) == 5000

        pages, seen, last_ts, cursor = 0, [], None, None
        with Writers(quiet_server.url, key, churn, rng, span) as writers:
            while True:
                # Both writers make progress between any two pages.
                before = list(writers.steps)
                wait_for(lambda b=before: all(now > then for now, then in zip(writers.steps, b, strict=True))
                         or writers.errors, "the writers' next step")
                assert not writers.errors, writers.errors
                params = {"limit": 97, **({"cursor": cursor} if cursor else {})}
                r = client.get("/v1/episodes", params=params)
                assert r.status_code == 200, r.text
                body = r.json()
                assert len(body["episodes"]) <= 97
                for e in body["episodes"]:
                    assert last_ts is None or e["timestamp"] <= last_ts  # newest first
                    last_ts = e["timestamp"]
                    seen.append(e["id"])
                pages += 1
                cursor = body["next_cursor"]
                if cursor is None:
                    break
        assert not writers.errors, writers.errors
    assert pages >= 5000 // 97
    assert writers.steps[0] >= pages and writers.steps[1] >= pages and writers.deleted
    assert len(seen) == len(set(seen)), "an episode was listed twice"
    missing = set(stable) - set(seen)
    assert not missing, f"{len(missing)} episodes that existed throughout were skipped"
    assert set(seen) <= set(stable) | set(churn) | set(writers.created)


# ----- acceptance 2 -----
def test_patch_is_seen_by_every_worker_and_the_embedding_cannot_change(quiet_server):
    key = quiet_server.create_tenant(unique_slug("patch"), "--dim", str(DIM))
    rng = np.random.default_rng(2)
    vector = [1.0] + [0.0] * (DIM - 1)
    with fresh_client(quiet_server.url, key) as client:
        others = client.post("/v1/episodes/batch", json={"episodes": [
            episode(DIM, rng, tags=["old"], reward=0.0) for _ in range(20)]}).json()["ids"]
        eid = client.post("/v1/episodes", json=episode(DIM, rng, state_embedding=vector, tags=["old"],
                                                       reward=0.0, metadata={"a": 1})).json()["id"]
        for _ in range(9):  # fresh connections: warm every worker's cache at the old version
            assert len(query_ids(client, tags_all=["old"])) == 21
        r = client.patch(f"/v1/episodes/{eid}", json={"tags": ["new"], "reward": 5.0, "source": "patched",
                                                      "metadata_merge": {"b": 2}})
        assert r.status_code == 200, r.text
        assert r.json()["tags"] == ["new"] and r.json()["metadata"] == {"a": 1, "b": 2}
        for _ in range(9):  # whichever worker answers sees the change at once
            assert query_ids(client, tags_all=["new"]) == [eid]
            assert query_ids(client, min_reward=1.0, source="patched") == [eid]
            assert sorted(query_ids(client, tags_all=["old"])) == sorted(others)
            assert list_ids(client, tags_any="new") == [eid]
            assert client.get(f"/v1/episodes/{eid}").json()["reward"] == 5.0

        before = client.get(f"/v1/episodes/{eid}").json()
        r = client.patch(f"/v1/episodes/{eid}", json={"state_embedding": [0.0, 1.0] + [0.0] * (DIM - 2),
                                                      "reward": -1.0})
        assert r.status_code == 400 and r.json()["error"].startswith("state_embedding:")
        assert "store a new episode" in r.json()["error"]
        for _ in range(6):
            assert client.get(f"/v1/episodes/{eid}").json() == before
            hit = client.post("/v1/query", json={"query_embedding": vector, "top_k": 1}).json()["episodes"][0]
            assert hit["id"] == eid and hit["score"] > 0.999 and hit["reward"] == 5.0


# ----- acceptance 3 -----
def test_ttl_episode_vanishes_on_every_worker_and_manage_expire_removes_it(quiet_server):
    slug = unique_slug("ttl")
    key = quiet_server.create_tenant(slug, "--dim", str(DIM))
    rng = np.random.default_rng(3)
    with fresh_client(quiet_server.url, key) as client:
        keep = client.post("/v1/episodes", json=episode(DIM, rng, tags=["t"])).json()["id"]
        brief = client.post("/v1/episodes", json=episode(DIM, rng, tags=["t"], ttl_secs=1)).json()["id"]
        expires_at = client.get(f"/v1/episodes/{brief}").json()["expires_at"]
        for _ in range(6):  # the workers cache the expiring episode while it lives
            got = query_ids(client)
            if time.time() * 1000 < expires_at:  # answered before expiry: it must be there
                assert sorted(got) == sorted([keep, brief])
        wait_for(lambda: time.time() * 1000 > expires_at + 50, "the episode to expire")
        for _ in range(9):
            assert query_ids(client) == [keep]
            assert query_ids(client, tags_any=["t"]) == [keep]
            assert list_ids(client) == [keep]
            assert client.get(f"/v1/episodes/{brief}").status_code == 404
            assert client.get("/v1/stats").json()["episodes"] == 1
        assert row_count(quiet_server, slug) == 2  # invisible, not yet removed
        assert quiet_server.manage("expire").startswith("removed ")
        assert row_count(quiet_server, slug) == 1
        for _ in range(6):  # the caches drop it (tombstone) and nothing else changes
            assert query_ids(client) == [keep] and list_ids(client) == [keep]


def test_default_ttl_and_the_in_server_sweep(quiet_db, quiet_server):
    slug = unique_slug("sweep")
    key = quiet_server.create_tenant(slug, "--dim", str(DIM), "--default-ttl-secs", "1")
    rng = np.random.default_rng(4)
    with fresh_client(quiet_server.url, key) as client:
        ids = client.post("/v1/episodes/batch", json={"episodes": [episode(DIM, rng) for _ in range(5)]}).json()["ids"]
        keep = client.post("/v1/episodes", json=episode(DIM, rng, expires_at=2**62)).json()["id"]
        expires_at = client.get(f"/v1/episodes/{ids[0]}").json()["expires_at"]
        assert expires_at is not None
        wait_for(lambda: time.time() * 1000 > expires_at + 50, "the episodes to expire")
        assert list_ids(client) == [keep]
        assert row_count(quiet_server, slug) == 6  # the quiet server never sweeps
    # A server whose workers sweep (here every second rather than every minute) removes them.
    with LiveServer(workers=2, env={**quiet_db, "AGENT_MEM_EXPIRE_INTERVAL_SECS": "1"}) as sweeper, \
            fresh_client(sweeper.url, key) as client:
        def swept() -> bool:
            assert client.get("/v1/stats").json()["episodes"] == 1  # a request's end may run the sweep
            return row_count(sweeper, slug) == 1

        wait_for(swept, "the in-server sweep")
        assert "expiry sweep removed" in sweeper.log()
    with fresh_client(quiet_server.url, key) as client:
        for _ in range(6):
            assert query_ids(client) == [keep]


# ----- acceptance 4 -----
def test_read_key_can_query_and_list_but_not_write(memcloud_server):
    slug = unique_slug("scope")
    admin = memcloud_server.create_tenant(slug, "--dim", str(DIM))
    read = memcloud_server.manage("issuekey", slug, "--scope", "read")
    write = memcloud_server.manage("issuekey", slug, "--scope", "write")
    rng = np.random.default_rng(5)
    with fresh_client(memcloud_server.url, admin) as client:
        eid = client.post("/v1/episodes", json=episode(DIM, rng)).json()["id"]
    with fresh_client(memcloud_server.url, read) as client:
        assert query_ids(client) == [eid]
        assert list_ids(client) == [eid]
        assert client.get(f"/v1/episodes/{eid}").status_code == 200
        assert client.get("/v1/stats").status_code == 200
        refused = [
            client.post("/v1/episodes", json=episode(DIM, rng)),
            client.post("/v1/episodes/batch", json={"episodes": [episode(DIM, rng)]}),
            client.patch(f"/v1/episodes/{eid}", json={"reward": 1.0}),
            client.delete(f"/v1/episodes/{eid}"),
            client.post("/v1/episodes/delete", json={"ids": [eid]}),
            client.post("/v1/prune/keep-newest", json={"n": 0}),
            client.post("/v1/prune/older-than", json={"timestamp_cutoff_ms": 2**62}),
        ]
        for r in refused:
            assert r.status_code == 403, (r.request.url, r.text)
            assert "'write' scope" in r.json()["error"]
        assert list_ids(client) == [eid]
    # Save, load and checkpoint need admin: a read or write key is refused wherever the routes exist.
    for raw in (read, write):
        with fresh_client(memcloud_server.url, raw) as client:
            for path, body in (("/v1/save", {"path": "snap"}), ("/v1/load", {"path": "snap"}),
                               ("/v1/checkpoint", {})):
                r = client.post(path, json=body)
                if r.status_code == 404 and "no such endpoint" in r.text:
                    continue  # route not in this build
                assert r.status_code == 403 and "'admin' scope" in r.json()["error"], (path, r.text)


def test_rollkey_both_keys_work_during_the_grace_period_then_only_the_new(memcloud_server):
    slug = unique_slug("roll")
    old = memcloud_server.create_tenant(slug, "--dim", str(DIM), scope="write")
    url = f"{memcloud_server.url}/v1/stats"
    new = memcloud_server.manage("rollkey", old[3:11], "--grace-hours", "0.003")  # about 11 s
    assert new.startswith("mc_") and new != old
    for _ in range(4):
        assert httpx.get(url, headers=auth(old)).status_code == 200
        assert httpx.get(url, headers=auth(new)).status_code == 200
    wait_for(lambda: httpx.get(url, headers=auth(old)).status_code == 401, "the grace period to end")
    for _ in range(4):
        assert httpx.get(url, headers=auth(old)).status_code == 401
        assert httpx.get(url, headers=auth(new)).status_code == 200
    r = httpx.post(f"{memcloud_server.url}/v1/episodes", json=episode(DIM, np.random.default_rng(6)),
                   headers=auth(new))
    assert r.status_code == 201  # same scope as the old key
