"""Save, load and list snapshots in process (DRF test client, real database, temp data dir)."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest

from episodes.models import Episode
from tenants.models import TenantState

pytestmark = pytest.mark.django_db(transaction=True)
DIM = 8

HOSTILE = [
    "../x", "..", ".", "/etc/passwd", "a/b", "a\\b", "%2e%2e", "%2e%2e%2fx", "x\x00", "x\x00y", "a" * 500,
    "a" * 129, "", " ", " x", "x ", "x\n", "\u2024\u2024", "\uff0e\uff0e", "\uff0e\uff0e\uff0fx", "snap\u2215x",
    "\uff41", "x..y", "x/../y", "~/x", "C:\\x", "\\\\server\\share", ".hidden", "-x", "_x", "x\t", "a/", "/",
    "..\\x", "x..", "caf\u00e9", "\u202ex", "file:///etc/passwd",
]
NOT_STRINGS = [None, 5, ["x"], {"a": 1}, True]


@pytest.fixture(autouse=True)
def data_dir(tmp_path, settings):
    root = tmp_path / "data"
    settings.AGENT_MEM_DATA_DIR = root
    settings.AGENT_MEM_AUDIT_LOG = str(tmp_path / "audit.jsonl")
    return root


def tricky_vector(rng, i: int) -> list[float]:
    """Values that do not survive a careless float32 -> text -> float32 trip."""
    v = rng.normal(size=DIM).astype(np.float32)
    v[0] = np.float32(0.1) * (i + 1)
    v[1] = np.float32(1e-45)  # subnormal
    v[2] = np.float32(-0.0)
    v[3] = np.float32(1.7e19)  # large, squared norm still finite
    return v.tolist()


def store_rich(client, rng, n: int) -> list[str]:
    eps = []
    for i in range(n):
        body = {"task_id": f"task_{i}", "state_embedding": tricky_vector(rng, i), "reward": float(rng.normal()),
                "metadata": {"i": i, "nested": {"x": [1, 2.5, None, "s\u00e9"]}}, "timestamp": 1000 + i % 3,
                "tags": [f"t{i % 4}", "all"], "source": "src" if i % 2 else None, "user_id": f"u{i % 3}",
                "steps": [{"step": i}], "expires_at": 4_000_000_000_000 if i % 5 == 0 else None}
        if i % 2:
            body["id"] = str(uuid.uuid4())
        eps.append(body)
    r = client.post("/v1/episodes/batch", {"episodes": eps}, format="json")
    assert r.status_code == 201, r.content
    return r.json()["ids"]


def db_rows(tenant) -> list[dict]:
    return list(Episode.objects.filter(tenant=tenant).order_by("seq").values(
        "id", "task_id", "embedding", "reward", "metadata", "timestamp", "tags", "source", "user_id", "steps",
        "expires_at", "content_hash"))


def state_of(tenant) -> tuple[int, int, int]:
    s = TenantState.objects.get(tenant=tenant)
    return s.version, s.generation, s.episode_count


def query_ids(client, **flt) -> list[str]:
    r = client.post("/v1/query", {"query_embedding": [1.0] * DIM, "top_k": 1000, **flt}, format="json")
    assert r.status_code == 200, r.content
    return sorted(h["id"] for h in r.json()["episodes"])


def test_save_prune_load_restores_every_field_bit_exact(api, tenant, data_dir, tmp_path):
    t, key = tenant
    client = api.as_key(key)
    rng = np.random.default_rng(1)
    ids = store_rich(client, rng, 40)
    before = db_rows(t)
    got_before = {i: client.get(f"/v1/episodes/{i}").json() for i in ids}
    r = client.post("/v1/save", {"path": "snap-1.jsonl"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json() == {"ok": True, "path": "snap-1.jsonl", "episodes": 40}
    assert client.post("/v1/prune/keep-newest", {"n": 0}, format="json").json() == {"removed": 40}
    assert query_ids(client) == []
    r = client.post("/v1/load", {"path": "snap-1.jsonl"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json() == {"ok": True, "episodes": 40}
    after = db_rows(t)
    # Same rows in the same store order, embeddings byte for byte, every field equal.
    assert [{**r, "embedding": bytes(r["embedding"])} for r in after] == \
        [{**r, "embedding": bytes(r["embedding"])} for r in before]
    assert {i: client.get(f"/v1/episodes/{i}").json() for i in ids} == got_before
    assert query_ids(client) == sorted(ids)
    assert query_ids(client, tags_all=["t1"]) == sorted(i for i in ids if "t1" in got_before[i]["tags"])
    # An idempotent retry of an original store still answers 200 after the restore.
    first_client_id = next(i for i in ids if got_before[i]["task_id"] == "task_1")
    retry = {k: v for k, v in got_before[first_client_id].items()}
    assert client.post("/v1/episodes", retry, format="json").status_code == 200
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    ops = {(a["op"], a.get("path"), a.get("episode_count")) for a in audit}
    assert ("save", "snap-1.jsonl", 40) in ops and ("load", "snap-1.jsonl", 40) in ops


def test_snapshot_file_format(api, tenant, data_dir):
    t, key = tenant
    client = api.as_key(key)
    ids = store_rich(client, np.random.default_rng(2), 3)
    client.post("/v1/save", {"path": "fmt"}, format="json")
    path = data_dir / "acme" / "snapshots" / "fmt"
    lines = path.read_bytes().splitlines()
    header = json.loads(lines[0])
    assert set(header) == {"format", "version", "tenant", "dim", "episodes", "created"}
    assert (header["format"], header["version"], header["tenant"], header["dim"], header["episodes"]) == \
        ("memcloud-snapshot", 1, "acme", DIM, 3)
    episodes = [json.loads(line) for line in lines[1:]]
    assert [e["id"] for e in episodes] == ids
    assert {"id", "task_id", "state_embedding", "reward", "metadata", "timestamp", "tags", "source", "user_id",
            "steps", "expires_at"} <= set(episodes[0])
    listed = client.get("/v1/snapshots").json()
    assert listed == {"snapshots": [{"path": "fmt", "episodes": 3, "bytes": path.stat().st_size,
                                     "created": header["created"]}]}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    # Leftovers of a save that died long ago are cleared by the next save; a recent one is kept.
    old, recent = path.parent / ".tmp-fmt-dead", path.parent / ".tmp-fmt-busy"
    old.write_text("half")
    recent.write_text("half")
    os.utime(old, (1, 1))
    client.post("/v1/save", {"path": "other"}, format="json")
    assert not old.exists() and recent.exists()
    assert [s["path"] for s in client.get("/v1/snapshots").json()["snapshots"]] == ["fmt", "other"]


@pytest.mark.parametrize("name", HOSTILE + NOT_STRINGS)
def test_hostile_paths_are_refused_and_create_nothing(api, tenant, data_dir, tmp_path, name):
    _, key = tenant
    client = api.as_key(key)
    def tree() -> set[str]:  # everything a wrong path could reach: the temp tree, its parent, the cwd
        return {str(p) for p in tmp_path.rglob("*")} | set(os.listdir(tmp_path.parent)) | set(os.listdir("."))

    before = tree()
    for endpoint in ("/v1/save", "/v1/load"):
        r = client.post(endpoint, {"path": name}, format="json")
        assert r.status_code == 400, (endpoint, name, r.content)
        assert r.json()["error"].startswith("path")
    created = tree() - before
    assert all(p.startswith(str(data_dir / "acme")) for p in created), created
    assert not (data_dir / "acme" / "snapshots").exists() or not os.listdir(data_dir / "acme" / "snapshots")


def test_symlinked_snapshots_are_refused(api, tenant, data_dir, tmp_path):
    _, key = tenant
    client = api.as_key(key)
    outside = tmp_path / "outside.jsonl"
    outside.write_text("secret\n")
    folder = data_dir / "acme" / "snapshots"
    folder.mkdir(parents=True)
    (folder / "link").symlink_to(outside)
    assert client.post("/v1/load", {"path": "link"}, format="json").status_code == 400
    assert client.post("/v1/save", {"path": "link"}, format="json").status_code == 200  # replaces the link
    assert outside.read_text() == "secret\n" and not (folder / "link").is_symlink()
    # A tenant folder that is a symlink elsewhere is refused outright.
    (data_dir / "linked").symlink_to(tmp_path)
    from tenants.services import key_issue, tenant_create

    _, linked_key = key_issue(tenant=tenant_create(slug="linked", dim=DIM), scope="admin")
    r = api.as_key(linked_key).post("/v1/save", {"path": "x"}, format="json")
    assert r.status_code == 400 and not (tmp_path / "snapshots").exists()


def test_tenants_cannot_see_load_or_overwrite_each_others_snapshots(api, tenant, other_tenant, data_dir):
    a, key_a = tenant
    b, key_b = other_tenant
    rng = np.random.default_rng(3)
    ids_a = store_rich(api.as_key(key_a), rng, 5)
    assert api.as_key(key_a).post("/v1/save", {"path": "shared-name"}, format="json").status_code == 200
    a_file = data_dir / "acme" / "snapshots" / "shared-name"
    a_bytes = a_file.read_bytes()
    client_b = api.as_key(key_b)
    assert client_b.get("/v1/snapshots").json() == {"snapshots": []}
    assert client_b.post("/v1/load", {"path": "shared-name"}, format="json").status_code == 404
    assert client_b.post("/v1/save", {"path": "shared-name"}, format="json").json()["episodes"] == 1  # its own
    assert a_file.read_bytes() == a_bytes
    assert [s["episodes"] for s in client_b.get("/v1/snapshots").json()["snapshots"]] == [1]
    assert api.as_key(key_a).post("/v1/load", {"path": "shared-name"}, format="json").json()["episodes"] == 5
    assert query_ids(api.as_key(key_a)) == sorted(ids_a)
    assert Episode.objects.filter(tenant=b).count() == 1  # its own, untouched by acme's load
    # A snapshot moved by the operator between tenants of the same dim loads (header tenant is informational).
    (data_dir / "rival" / "snapshots" / "moved").write_bytes(a_bytes)
    assert api.as_key(key_b).post("/v1/load", {"path": "moved"}, format="json").json()["episodes"] == 5
    assert query_ids(api.as_key(key_b)) == sorted(ids_a)


def _bad_files(good: bytes) -> dict[str, bytes]:
    lines = good.splitlines(keepends=True)
    header = json.loads(lines[0])
    first = json.loads(lines[1])

    def with_header(**changes) -> bytes:
        return json.dumps({**header, **changes}).encode() + b"\n" + b"".join(lines[1:])

    def with_episode(**changes) -> bytes:
        return lines[0] + json.dumps({**first, **changes}).encode() + b"\n" + b"".join(lines[2:])

    no_key = {k: v for k, v in header.items() if k != "created"}
    return {
        "truncated mid-line": good[: len(good) - 40],
        "missing lines": b"".join(lines[:-2]),
        "extra line": good + lines[1],
        "garbage line": lines[0] + b"\x00\xff garbage {\n" + b"".join(lines[2:]),
        "flipped byte": good.replace(b'"task_id"', b'"task_ie"', 1),
        "empty": b"",
        "header only garbage": b"hello\n",
        "no header": b"".join(lines[1:]),
        "wrong format": with_header(format="other"),
        "wrong version": with_header(version=2),
        "missing header key": json.dumps(no_key).encode() + b"\n" + b"".join(lines[1:]),
        "negative count": with_header(episodes=-1),
        "wrong dim": with_header(dim=DIM + 1),
        "short embedding": with_episode(state_embedding=first["state_embedding"][:-1]),
        "embedding beyond float32": with_episode(state_embedding=[1e39] + first["state_embedding"][1:]),
        "bad reward": with_episode(reward="x"),
        "unknown field": with_episode(extra=1),
        "missing id": with_episode(id=None),
        "duplicate id": lines[0] + lines[1] + lines[1] + b"".join(lines[3:]),
        "bad content hash": with_episode(content_hash="zz"),
        "array line": lines[0] + b"[1, 2]\n" + b"".join(lines[2:]),
    }


def test_bad_snapshots_are_400_and_change_nothing(api, tenant, data_dir):
    t, key = tenant
    client = api.as_key(key)
    ids = store_rich(client, np.random.default_rng(4), 6)
    client.post("/v1/save", {"path": "good"}, format="json")
    folder = data_dir / "acme" / "snapshots"
    good = (folder / "good").read_bytes()
    client.post("/v1/prune/keep-newest", {"n": 4}, format="json")
    kept = query_ids(client)
    rows, state = db_rows(t), state_of(t)
    for label, content in _bad_files(good).items():
        (folder / "bad").write_bytes(content)
        r = client.post("/v1/load", {"path": "bad"}, format="json")
        assert r.status_code == 400, (label, r.content)
        assert r.json()["error"].startswith("path: "), (label, r.json())
        assert db_rows(t) == rows and state_of(t) == state, label
        assert query_ids(client) == kept, label
    assert client.post("/v1/load", {"path": "good"}, format="json").json()["episodes"] == 6
    assert query_ids(client) == sorted(ids)


def test_load_over_the_quota_is_403_and_unknown_name_404(api, make_tenant, data_dir):
    t, key = make_tenant("small", dim=DIM, max_episodes=3)
    client = api.as_key(key)
    ids = client.post("/v1/episodes/batch", {"episodes": [
        {"task_id": "a", "state_embedding": [1.0] * DIM, "reward": 1.0} for _ in range(3)]}, format="json").json()["ids"]
    client.post("/v1/save", {"path": "three"}, format="json")
    lines = (data_dir / "small" / "snapshots" / "three").read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    extra = json.loads(lines[1])
    extra["id"] = str(uuid.uuid4())
    (data_dir / "small" / "snapshots" / "four").write_bytes(
        json.dumps({**header, "episodes": 4}).encode() + b"\n" + b"".join(lines[1:]) + json.dumps(extra).encode()
        + b"\n")
    state = state_of(t)
    r = client.post("/v1/load", {"path": "four"}, format="json")
    assert r.status_code == 403 and "max_episodes" in r.json()["error"]
    assert state_of(t) == state and query_ids(client) == sorted(ids)
    r = client.post("/v1/load", {"path": "nope"}, format="json")
    assert r.status_code == 404 and "path" in r.json()["error"]


def test_scopes_and_strict_bodies(api, make_tenant):
    _, write_key = make_tenant("w", dim=DIM, scope="write")
    client = api.as_key(write_key)
    for endpoint, body in (("/v1/save", {"path": "x"}), ("/v1/load", {"path": "x"}), ("/v1/checkpoint", {})):
        r = client.post(endpoint, body, format="json")
        assert r.status_code == 403 and "admin" in r.json()["error"], endpoint
    assert client.get("/v1/snapshots").status_code == 200
    _, read_key = make_tenant("r", dim=DIM, scope="read")
    assert api.as_key(read_key).get("/v1/snapshots").json() == {"snapshots": []}
    _, admin_key = make_tenant("adm", dim=DIM)
    admin = api.as_key(admin_key)
    for endpoint, body, field in (("/v1/save", {"path": "x", "extra": 1}, "extra"),
                                  ("/v1/save", {"paht": "x"}, "paht"), ("/v1/load", {}, "path"),
                                  ("/v1/checkpoint", {"full": True}, "full"), ("/v1/save", [1], "body")):
        r = admin.post(endpoint, body, format="json")
        assert r.status_code == 400 and field in r.json()["error"], (endpoint, body, r.json())
    assert admin.get("/v1/snapshots").json() == {"snapshots": []}
    assert admin.post("/v1/checkpoint", {}, format="json").json() == {"ok": True, "episodes": 0}


def test_loaded_lines_are_normalised_like_the_store_api(api, make_tenant, data_dir):
    """The second pass converts lines itself: it must agree with EpisodeInput + the store service."""
    t, key = make_tenant("norm", dim=DIM, default_ttl_secs=60)
    client = api.as_key(key)
    eid = str(uuid.uuid4())
    line = {"id": eid, "task_id": "t", "state_embedding": [1, 0.5, 2.0, 0, 0, 0, 0, 3], "reward": 2,
            "timestamp": 5.0, "tags": ["a", "a", "b"], "expires_at": None}
    folder = data_dir / "norm" / "snapshots"
    folder.mkdir(parents=True)
    header = {"format": "memcloud-snapshot", "version": 1, "tenant": "elsewhere", "dim": DIM, "episodes": 1,
              "created": "2026-01-01T00:00:00Z"}
    (folder / "hand").write_text(json.dumps(header) + "\n" + json.dumps(line) + "\n")
    assert client.post("/v1/load", {"path": "hand"}, format="json").json() == {"ok": True, "episodes": 1}
    got = client.get(f"/v1/episodes/{eid}").json()
    assert (got["timestamp"], got["tags"], got["metadata"], got["reward"], got["expires_at"]) == \
        (5, ["a", "b"], {}, 2.0, None)
    assert got["state_embedding"] == [1.0, 0.5, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0]
    # Same content sent to the store API: an idempotent retry (same content hash), not a conflict.
    retry = {k: v for k, v in line.items() if k != "expires_at"}
    assert client.post("/v1/episodes", retry, format="json").status_code == 200
    assert client.post("/v1/episodes", {**retry, "reward": 3}, format="json").status_code == 409


def test_a_snapshot_changed_in_place_during_a_load_is_refused(api, tenant, data_dir, monkeypatch):
    """The second pass must insert what the first pass checked: an in-place edit in between (not
    something the service itself ever does) rolls the load back."""
    from episodes import snapshot_services

    t, key = tenant
    client = api.as_key(key)
    ids = store_rich(client, np.random.default_rng(8), 4)
    client.post("/v1/save", {"path": "s"}, format="json")
    client.post("/v1/prune/keep-newest", {"n": 2}, format="json")
    rows, state = db_rows(t), state_of(t)
    path = data_dir / "acme" / "snapshots" / "s"
    checked = snapshot_services._validate_file

    def validate_then_edit(*args, **kwargs):
        crc = checked(*args, **kwargs)
        data = path.read_bytes()
        with open(path, "r+b") as fh:  # same length, still valid: task_0 -> task_9
            fh.write(data.replace(b'"task_0"', b'"task_9"', 1))
        return crc

    monkeypatch.setattr(snapshot_services, "_validate_file", validate_then_edit)
    r = client.post("/v1/load", {"path": "s"}, format="json")
    assert r.status_code == 400 and "changed while" in r.json()["error"]
    assert db_rows(t) == rows and state_of(t) == state
    monkeypatch.undo()
    assert client.post("/v1/load", {"path": "s"}, format="json").json()["episodes"] == 4
    assert query_ids(client) == sorted(ids)
