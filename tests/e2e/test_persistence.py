"""Snapshots, checkpoints and crash durability against a real gunicorn (docs/api.md §3 and §4)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.server import LiveServer
from tests.support.tenants import episode, fresh_client, unique_slug

pytestmark = pytest.mark.e2e
DIM = 16
ROUNDS = 6  # fresh connections per check: with 3 workers, every worker answers some of them


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("memcloud-data")


@pytest.fixture(scope="module")
def server(server_db_env, data_dir) -> Iterator[LiveServer]:
    live = LiveServer(workers=3, env={**server_db_env, "AGENT_MEM_DATA_DIR": str(data_dir)})
    live.start()
    yield live
    live.stop()


def new_tenant(server: LiveServer) -> tuple[str, str]:
    slug = unique_slug("p")
    return slug, server.create_tenant(slug, "--dim", str(DIM))


def all_ids(client: httpx.Client, **flt) -> list[str]:
    r = client.post("/v1/query", json={"query_embedding": [1.0] * DIM, "top_k": 1000, **flt})
    assert r.status_code == 200, r.text
    return sorted(h["id"] for h in r.json()["episodes"])


def store(client: httpx.Client, rng, n: int, **fields) -> list[str]:
    r = client.post("/v1/episodes/batch", json={"episodes": [
        episode(DIM, rng, metadata={"i": i}, tags=[f"k{i % 3}"], timestamp=10_000 + i, **fields)
        for i in range(n)]})
    assert r.status_code == 201, r.text
    return r.json()["ids"]


def test_save_prune_load_is_seen_by_every_worker(server):
    _, key = new_tenant(server)
    rng = np.random.default_rng(21)
    with fresh_client(server.url, key) as client:
        ids = store(client, rng, 80, source="agent", steps=[{"a": 1}])
        before = {i: client.get(f"/v1/episodes/{i}").json() for i in ids}
        for _ in range(ROUNDS):  # every worker caches the tenant
            assert all_ids(client) == sorted(ids)
        assert client.post("/v1/save", json={"path": "before-prune"}).json() == \
            {"ok": True, "path": "before-prune", "episodes": 80}
        assert client.post("/v1/prune/keep-newest", json={"n": 0}).json() == {"removed": 80}
        for _ in range(ROUNDS):
            assert all_ids(client) == []
        assert client.post("/v1/load", json={"path": "before-prune"}).json() == {"ok": True, "episodes": 80}
        for _ in range(ROUNDS):
            assert all_ids(client) == sorted(ids)
            assert all_ids(client, tags_all=["k1"]) == sorted(i for i in ids if before[i]["tags"] == ["k1"])
        # Every field, the embedding bit for bit (float32 -> JSON -> float32).
        assert {i: client.get(f"/v1/episodes/{i}").json() for i in ids} == before


def test_hostile_paths_and_other_tenants_snapshots(server, data_dir):
    slug_a, key_a = new_tenant(server)
    slug_b, key_b = new_tenant(server)
    rng = np.random.default_rng(22)
    outside_before = {p.name for p in data_dir.parent.iterdir()}
    with fresh_client(server.url, key_a) as a, fresh_client(server.url, key_b) as b:
        ids = store(a, rng, 5)
        assert a.post("/v1/save", json={"path": "mine"}).status_code == 200
        mine = (data_dir / slug_a / "snapshots" / "mine").read_bytes()
        for name in ["../x", f"../{slug_b}/snapshots/x", "/etc/passwd", "a/b", "..", "%2e%2e", "x\x00",
                     "a" * 500, "\u2024\u2024", "\uff0e\uff0e", "a\\b", "", ".", "x/../../y", "C:\\x",
                     f"../../{slug_b}", "~root", ".tmp-x", "x\n", "\u2215etc", "..%2f", 7, None]:
            for endpoint in ("/v1/save", "/v1/load"):
                r = a.post(endpoint, json={"path": name})
                assert r.status_code == 400 and r.json()["error"].startswith("path"), (endpoint, name, r.text)
        assert b.get("/v1/snapshots").json() == {"snapshots": []}
        assert b.post("/v1/load", json={"path": "mine"}).status_code == 404
        assert b.post("/v1/save", json={"path": "mine"}).json()["episodes"] == 0
        assert (data_dir / slug_a / "snapshots" / "mine").read_bytes() == mine
        assert [s["path"] for s in a.get("/v1/snapshots").json()["snapshots"]] == ["mine"]
        assert a.post("/v1/load", json={"path": "mine"}).json()["episodes"] == 5
        assert all_ids(a) == sorted(ids) and all_ids(b) == []
    assert {p.name for p in data_dir.parent.iterdir()} == outside_before
    assert sorted(p.name for p in data_dir.iterdir() if p.name in (slug_a, slug_b)) == sorted([slug_a, slug_b])
    assert sorted(str(p.relative_to(data_dir)) for p in (data_dir / slug_a).rglob("*")) == \
        [f"{slug_a}/snapshots", f"{slug_a}/snapshots/mine"]


def test_truncated_or_wrong_snapshots_change_nothing(server, data_dir):
    slug, key = new_tenant(server)
    rng = np.random.default_rng(23)
    with fresh_client(server.url, key) as client:
        ids = store(client, rng, 30)
        client.post("/v1/save", json={"path": "good"})
        good = (data_dir / slug / "snapshots" / "good").read_bytes()
        lines = good.splitlines(keepends=True)
        header = json.loads(lines[0])
        bad = {
            "truncated": good[:-30],
            "short": b"".join(lines[:-1]),
            "corrupt": good.replace(b'"reward"', b'"rewar"', 3),
            "wrong-dim": json.dumps({**header, "dim": DIM * 2}).encode() + b"\n" + b"".join(lines[1:]),
            "bad-header": json.dumps({**header, "format": "x"}).encode() + b"\n" + b"".join(lines[1:]),
        }
        client.post("/v1/prune/keep-newest", json={"n": 20})
        kept = all_ids(client)
        stats = client.get("/v1/stats").json()
        for name, content in bad.items():
            (data_dir / slug / "snapshots" / name).write_bytes(content)
            r = client.post("/v1/load", json={"path": name})
            assert r.status_code == 400, (name, r.text)
            for _ in range(3):
                assert all_ids(client) == kept
            assert client.get("/v1/stats").json() == stats
        assert client.post("/v1/load", json={"path": "good"}).json()["episodes"] == 30
        assert all_ids(client) == sorted(ids)


def test_a_restarted_server_answers_from_the_checkpoint_and_catches_up(server, data_dir):
    slug, key = new_tenant(server)
    rng = np.random.default_rng(24)
    with fresh_client(server.url, key) as client:
        ids = store(client, rng, 300)
        assert client.post("/v1/checkpoint", json={}).json() == {"ok": True, "episodes": 300}
        for eid in ids[:12]:  # changes after the checkpoint: deletes, stores
            assert client.delete(f"/v1/episodes/{eid}").status_code == 200
        later = store(client, rng, 25)
    expected = sorted(ids[12:] + later)
    mark = len(server.log())
    server.restart()  # workers that have never seen the tenant
    with fresh_client(server.url, key) as client:
        for _ in range(ROUNDS):
            assert all_ids(client) == expected
    log = server.log()[mark:]
    assert f"index of {slug} loaded from checkpoint" in log
    assert f"index of {slug} built from the database" not in log

    # The management command writes the same from the database; then damage it: workers fall back.
    assert server.manage("checkpoint", slug) == f"checkpoint of {slug}: 313 episodes"
    current = (data_dir / slug / "checkpoint" / "CURRENT").read_text().strip()
    emb = data_dir / slug / "checkpoint" / current / "emb.npy"
    data = bytearray(emb.read_bytes())
    data[len(data) // 2] ^= 0x55
    emb.write_bytes(bytes(data))
    mark = len(server.log())
    server.restart()
    with fresh_client(server.url, key) as client:
        for _ in range(ROUNDS):
            assert all_ids(client) == expected
    log = server.log()[mark:]
    assert f"index of {slug} built from the database: checkpoint unusable (emb.npy does not match" in log
    assert f"index of {slug} loaded from checkpoint" not in log


def test_sigkill_mid_stream_loses_no_acknowledged_batch_and_splits_none(server):
    _, key = new_tenant(server)
    batch_size = 40
    acked: list[int] = []
    sent: dict[int, list[str]] = {}
    enough = threading.Event()
    stop = threading.Event()

    def stream() -> None:
        rng = np.random.default_rng(25)
        with fresh_client(server.url, key) as client:
            n = 0
            while not stop.is_set():
                ids = [str(uuid.uuid4()) for _ in range(batch_size)]
                sent[n] = ids
                body = {"episodes": [episode(DIM, rng, id=i, tags=[f"batch-{n}"]) for i in ids]}
                try:
                    r = client.post("/v1/episodes/batch", json=body)
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 201:
                    acked.append(n)
                if len(acked) >= 25:
                    enough.set()
                n += 1

    writer = threading.Thread(target=stream)
    writer.start()
    assert enough.wait(120)
    server.kill_all()  # SIGKILL master and workers while batches are in flight
    stop.set()
    writer.join(30)
    server.start()
    with fresh_client(server.url, key) as client:
        present = set(all_ids(client))
        r = client.post("/v1/query", json={"query_embedding": [1.0] * DIM, "top_k": 1000})
        assert len(r.json()["episodes"]) == len(present)
        for n, ids in sent.items():
            there = present & set(ids)
            if n in acked:
                assert there == set(ids), f"acknowledged batch {n} lost {len(ids) - len(there)} episodes"
            else:
                assert there in (set(), set(ids)), f"batch {n} is partially stored"
            assert all_ids(client, tags_all=[f"batch-{n}"]) == (sorted(ids) if there else [])
        assert len(present) == batch_size * sum(1 for ids in sent.values() if present & set(ids))
