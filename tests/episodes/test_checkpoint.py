"""Index round trip through checkpoint files; workers starting from a checkpoint."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from episodes import checkpoint
from memindex.index import TenantIndex
from memindex.serialize import to_arrays
from memindex.storage import SpilledRows
from tests.memindex.oracle import assert_same_answers, make_rows, oracle, random_filters

DIM = 8


def test_restored_index_matches_the_oracle_after_changes(tmp_path, settings):
    settings.AGENT_MEM_DATA_DIR = tmp_path
    rng = np.random.default_rng(9)
    rows = make_rows(rng, 400, DIM)
    index = TenantIndex(DIM, "cosine")
    index.add(**rows)
    arrays, meta = to_arrays(index)
    checkpoint.write_checkpoint(slug="acme", identity="1@0", arrays=arrays, meta=meta, generation=0, version=3)
    manifest = checkpoint.current_manifest("acme")
    assert (manifest.generation, manifest.version, manifest.count) == (0, 3, 400)
    restored = checkpoint.read_checkpoint(manifest)
    assert isinstance(restored.storage.emb, np.memmap)  # mapped, copy-on-write
    gone = {f"id{i}" for i in range(0, 400, 3)}
    restored.remove(sorted(gone))
    keep = [i for i, eid in enumerate(rows["ids"]) if eid not in gone]
    kept = {key: ([v[i] for i in keep] if isinstance(v, list) else v[keep]) for key, v in rows.items()}
    for _ in range(40):
        q = rng.normal(size=DIM).astype(np.float32)
        flt = random_filters(rng)
        ids, _ = restored.search(q, 10, flt)
        expected, _ = oracle(kept, "cosine", q, 10, flt)
        assert len(ids) == len(expected)
    # The files on disk were not changed by the in-memory removal.
    again = checkpoint.read_checkpoint(checkpoint.current_manifest("acme"))
    assert len(again) == 400


def test_a_new_checkpoint_replaces_the_old_one_whole(tmp_path, settings):
    settings.AGENT_MEM_DATA_DIR = tmp_path
    rng = np.random.default_rng(2)
    for version, n in ((1, 10), (2, 20)):
        index = TenantIndex(DIM, "dot")
        index.add(**make_rows(rng, n, DIM))
        arrays, meta = to_arrays(index)
        checkpoint.write_checkpoint(slug="acme", identity="1@0", arrays=arrays, meta=meta, generation=0,
                                    version=version)
    root = checkpoint.checkpoint_root("acme")
    assert sorted(p.name.split("-")[0] for p in root.iterdir() if p.name != ".lock") == ["CURRENT", "ckpt"]
    assert checkpoint.current_manifest("acme").version == 2
    # A slower writer finishing later with an older version does not replace the newer checkpoint.
    checkpoint.write_checkpoint(slug="acme", identity="1@0", arrays=arrays, meta=meta, generation=0, version=1)
    assert checkpoint.current_manifest("acme").version == 2
    assert sorted(p.name.split("-")[0] for p in root.iterdir() if p.name != ".lock") == ["CURRENT", "ckpt"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest", "pointer"])
def test_damaged_checkpoints_are_refused(tmp_path, settings, damage):
    settings.AGENT_MEM_DATA_DIR = tmp_path
    index = TenantIndex(DIM, "cosine")
    index.add(**make_rows(np.random.default_rng(1), 50, DIM))
    arrays, meta = to_arrays(index)
    path = checkpoint.write_checkpoint(slug="acme", identity="1@0", arrays=arrays, meta=meta, generation=0,
                                       version=1)
    emb = path / "emb.npy"
    if damage == "flip":
        data = bytearray(emb.read_bytes())
        data[-5] ^= 0x40
        emb.write_bytes(bytes(data))
    elif damage == "truncate":
        emb.write_bytes(emb.read_bytes()[:-100])
    elif damage == "delete":
        (path / "meta.json").unlink()
    elif damage == "manifest":
        (path / "manifest.json").write_text("{not json")
    else:
        (path.parent / "CURRENT").write_text("../../etc\n")
    with pytest.raises(checkpoint.CheckpointUnusable):
        checkpoint.read_checkpoint(checkpoint.current_manifest("acme"))


def test_no_checkpoint_is_reported_as_such(tmp_path, settings):
    settings.AGENT_MEM_DATA_DIR = tmp_path
    with pytest.raises(checkpoint.CheckpointUnusable, match="no checkpoint"):
        checkpoint.current_manifest("acme")


# ----- workers starting from a checkpoint (real database, in process) -----

def _ep(rng, **fields):
    body = {"task_id": f"task_{rng.integers(5)}", "state_embedding": rng.normal(size=DIM).tolist(),
            "reward": float(rng.normal()), "tags": [f"g{rng.integers(4)}"]}
    body.update(fields)
    return body


def _query_ids(client, rng, **flt):
    r = client.post("/v1/query", {"query_embedding": rng.normal(size=DIM).tolist(), "top_k": 1000, **flt},
                    format="json")
    assert r.status_code == 200, r.content
    return sorted(h["id"] for h in r.json()["episodes"])


@pytest.mark.django_db(transaction=True)
def test_a_worker_starts_from_the_checkpoint_and_catches_up(api, tenant, tmp_path, settings, caplog):
    from episodes.cache import cache

    settings.AGENT_MEM_DATA_DIR = tmp_path
    _, key = tenant
    client = api.as_key(key)
    rng = np.random.default_rng(4)
    ids = client.post("/v1/episodes/batch", {"episodes": [_ep(rng) for _ in range(60)]}, format="json").json()["ids"]
    assert client.post("/v1/checkpoint", {}, format="json").json() == {"ok": True, "episodes": 60}
    # Changes after the checkpoint: deletes and stores.
    for eid in ids[:5]:
        assert client.delete(f"/v1/episodes/{eid}").status_code == 200
    later = client.post("/v1/episodes/batch", {"episodes": [_ep(rng) for _ in range(7)]}, format="json").json()["ids"]
    expected = sorted(ids[5:] + later)
    cache.clear()  # a worker that has never seen the tenant
    with caplog.at_level(logging.INFO, logger="memcloud.cache"):
        assert _query_ids(client, rng) == expected
    assert "loaded from checkpoint" in caplog.text
    assert _query_ids(client, rng, tags_any=["g1"]) == sorted(
        i for i in expected if client.get(f"/v1/episodes/{i}").json()["tags"] == ["g1"])


@pytest.mark.django_db(transaction=True)
def test_a_corrupt_or_stale_checkpoint_falls_back_to_the_database(api, tenant, tmp_path, settings, caplog):
    from episodes.cache import cache

    settings.AGENT_MEM_DATA_DIR = tmp_path
    t, key = tenant
    client = api.as_key(key)
    rng = np.random.default_rng(6)
    ids = client.post("/v1/episodes/batch", {"episodes": [_ep(rng) for _ in range(30)]}, format="json").json()["ids"]
    client.post("/v1/checkpoint", {}, format="json")
    current = checkpoint.current_manifest(t.slug)
    emb = current.path / "emb.npy"
    data = bytearray(emb.read_bytes())
    data[-1] ^= 0xFF
    emb.write_bytes(bytes(data))
    cache.clear()
    with caplog.at_level(logging.INFO, logger="memcloud.cache"):
        assert _query_ids(client, rng) == sorted(ids)
    assert "checkpoint unusable (emb.npy does not match the manifest" in caplog.text
    assert any(r.levelno == logging.WARNING and "does not match" in r.getMessage() for r in caplog.records)
    # Stale generation: a fresh checkpoint, then a load bumps the generation.
    client.post("/v1/checkpoint", {}, format="json")
    client.post("/v1/save", {"path": "s1"}, format="json")
    client.post("/v1/load", {"path": "s1"}, format="json")
    cache.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="memcloud.cache"):
        assert _query_ids(client, rng) == sorted(ids)
    assert "checkpoint unusable (stale generation" in caplog.text
    assert all(r.levelno == logging.INFO for r in caplog.records if "stale generation" in r.getMessage())


@pytest.mark.django_db(transaction=True)
def test_checkpoint_command_writes_every_tenant(tenant, other_tenant, tmp_path, settings):
    from django.core.management import call_command

    settings.AGENT_MEM_DATA_DIR = tmp_path
    out = call_command("checkpoint", "--all")
    assert "checkpoint of acme: 0 episodes" in out and "checkpoint of rival: 1 episodes" in out
    assert checkpoint.current_manifest("acme").count == 0
    from django.core.management.base import CommandError
    with pytest.raises(CommandError):
        call_command("checkpoint")
    with pytest.raises(CommandError):
        call_command("checkpoint", "nobody")


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_the_int8_copy_of_a_large_index_travels_with_the_checkpoint(tmp_path, settings, metric):
    settings.AGENT_MEM_DATA_DIR = tmp_path
    rng = np.random.default_rng(12)
    rows = make_rows(rng, 600, DIM)
    index = TenantIndex(DIM, metric, quantize_from=100)  # "large" from 100 rows, to test at small scale
    index.add(**rows)
    index.ensure_quantized()
    index.remove(["id3", "id50"])
    arrays, meta = to_arrays(index)
    assert {"quant_codes", "quant_scale", "quant_err", "quant_norm"} <= set(arrays)
    assert ("quant_sq" in arrays) == (metric == "l2")  # squared norms serve l2 only
    checkpoint.write_checkpoint(slug="big", identity="1@0", arrays=arrays, meta=meta, generation=0, version=1)
    restored = checkpoint.read_checkpoint(checkpoint.current_manifest("big"))
    assert restored.storage.quant is not None and len(restored) == 598
    assert isinstance(restored.storage.quant.codes, np.memmap)
    # The float32 rows are read from the checkpoint's own emb.npy, not copied into memory or a file.
    assert isinstance(restored.storage, SpilledRows)
    assert restored.storage.rows.base_rows == 598 and restored.storage.rows._file is None
    np.testing.assert_array_equal(restored.storage.read(np.arange(598)), index.storage.read(np.arange(598)))
    np.testing.assert_array_equal(restored.storage.quant.codes[:598], index.storage.quant.codes[:598])
    restored.quantize_from = index.quantize_from
    assert_same_answers(index, restored, rng)
    more = make_rows(rng, 40, DIM, start=2000)
    for target in (index, restored):
        target.remove(["id7"])
        target.add(**more)
    assert_same_answers(index, restored, rng)


def test_checkpoints_keep_the_keyword_column_and_version_2_ones_still_read(tmp_path, settings):
    import orjson

    from memindex.ranking import keyword_search
    from memindex.serialize import KEYWORD_COLUMNS

    settings.AGENT_MEM_DATA_DIR = tmp_path
    rng = np.random.default_rng(4)
    index = TenantIndex(DIM, "cosine")
    index.add(**make_rows(rng, 50, DIM), text=[f"row {i} err_{i % 5}" for i in range(50)])
    expected = keyword_search(index, "err_3", 20)
    arrays, meta = to_arrays(index)
    path = checkpoint.write_checkpoint(slug="acme", identity="1@0", arrays=arrays, meta=meta, generation=0,
                                       version=1)
    restored = checkpoint.read_checkpoint(checkpoint.current_manifest("acme"))
    got = keyword_search(restored, "err_3", 20)
    assert restored.ids_at(got.rows) == index.ids_at(expected.rows) and len(got.rows) == 10
    assert got.scores.tolist() == expected.scores.tolist()
    # As a checkpoint written before episodes had text: format 2, no keyword files.
    manifest = orjson.loads((path / "manifest.json").read_bytes())
    for name in KEYWORD_COLUMNS:
        (path / f"{name}.npy").unlink()
        del manifest["files"][f"{name}.npy"]
    manifest["format_version"] = 2
    (path / "manifest.json").write_bytes(orjson.dumps(manifest))
    old = checkpoint.read_checkpoint(checkpoint.current_manifest("acme"))
    old.check()
    assert len(old) == 50 and keyword_search(old, "err_3", 20).rows.size == 0
    manifest["format_version"] = 1
    (path / "manifest.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(checkpoint.CheckpointUnusable, match="format"):
        checkpoint.current_manifest("acme")
