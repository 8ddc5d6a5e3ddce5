"""Binary checkpoints of a tenant's index, for a fast start of a worker that has never seen it.

Layout under `AGENT_MEM_DATA_DIR/<slug>/checkpoint/`: one directory per checkpoint (`ckpt-...`)
holding a `.npy` file per index column (and the int8 copy of a large tenant), `meta.json` (ids, vocabularies) and `manifest.json`
(generation, version, dim, metric, count, format, size and CRC-32 of every file), plus `CURRENT`,
a one-line file naming the directory in use. A checkpoint is written in full into a new directory
and fsynced before `CURRENT` is atomically replaced, so a crash leaves the previous checkpoint (or
none) in use, never a half one.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import re
import shutil
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
from django.conf import settings

from memindex.index import TenantIndex
from memindex.rowstore import RowStore
from memindex.serialize import ARRAY_COLUMNS, KEYWORD_COLUMNS, from_arrays, quant_columns

from .snapshots import fsync_dir

FORMAT = "memcloud-checkpoint"
# 2: the int8 copy's scales, errors and norms are float32; squared norms for l2 only.
# 3: the keyword column (kw_*.npy, the vocabulary in meta.json); a version 2 one reads as rows without text.
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
POINTER = "CURRENT"
DIR_RE = re.compile(r"^ckpt-[0-9a-z-]{1,100}$")
NO_CHECKPOINT = "no checkpoint"  # why a tenant that was never checkpointed has none
TMP_GRACE_SECS = 3600  # a temporary directory this old belongs to a writer that died
# Columns memory-mapped copy-on-write when loading (the large ones); the rest are read in full.
# With the int8 copy, emb.npy is neither: the index reads its candidates' rows from the file
# (rowstore.py), so they stay in the page cache, shared by every worker.
MAPPED = ("emb", "tagbits", "quant_codes")


def optional_columns(metric: str) -> tuple[str, ...]:
    """The int8 copy of a large tenant, when the index has built it (squared norms for l2 only)."""
    return tuple(f"quant_{name}" for name in quant_columns(metric))


class CheckpointUnusable(Exception):
    """Why a checkpoint cannot be used; the caller falls back to the database."""


class CheckpointOutdated(CheckpointUnusable):
    """The expected case: no checkpoint, or one from before a load or bulk removal."""


@dataclass(frozen=True)
class Manifest:
    generation: int
    version: int
    dim: int
    metric: str
    count: int
    identity: str
    path: Path


def tenant_identity(tenant) -> str:
    """Tells a tenant apart from an earlier one that had the same slug (deleted, then recreated)."""
    return f"{tenant.pk}@{tenant.created.timestamp():.6f}"


def checkpoint_root(slug: str) -> Path:
    return Path(settings.AGENT_MEM_DATA_DIR) / slug / "checkpoint"


def _crc32(path: Path) -> int:
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if not size:
            return 0
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
            return zlib.crc32(view)  # straight from the page cache, no copy through a buffer


def _write_file(path: Path, data: bytes | np.ndarray) -> dict:
    with open(path, "wb") as fh:
        if isinstance(data, np.ndarray):
            np.save(fh, np.ascontiguousarray(data), allow_pickle=False)
        else:
            fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return {"bytes": path.stat().st_size, "crc32": _crc32(path)}


def write_checkpoint(*, slug: str, identity: str, arrays: dict[str, np.ndarray], meta: dict, generation: int,
                     version: int) -> Path:
    """Write arrays/meta (from memindex.serialize.to_arrays, already copied or locked) as the tenant's
    checkpoint at (generation, version) and make it current. Returns its directory."""
    root = checkpoint_root(slug)
    root.mkdir(parents=True, exist_ok=True)
    if root.is_symlink():
        raise OSError(f"{root} is a symlink")
    name = f"ckpt-{generation}-{version}-{uuid.uuid4().hex[:12]}"
    work = root / f".tmp-{name}"
    work.mkdir()
    try:
        files = {f"{column}.npy": _write_file(work / f"{column}.npy", arrays[column])
                 for column in (*ARRAY_COLUMNS, *KEYWORD_COLUMNS, *optional_columns(meta["metric"]))
                 if column in arrays}
        files["meta.json"] = _write_file(work / "meta.json", orjson.dumps(meta))
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "tenant": slug, "identity": identity,
            "generation": generation, "version": version, "dim": meta["dim"], "metric": meta["metric"], "count": meta["n"],
            "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"), "files": files,
        }
        _write_file(work / "manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        fsync_dir(work)
        os.rename(work, root / name)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    with _swap_lock(root):  # concurrent writers (several workers, the command) swap one at a time
        try:
            current = current_manifest(slug)
            newer = current.identity == identity and (current.generation, current.version) > (generation, version)
        except CheckpointUnusable:
            newer = False
        if newer:  # a slower writer must not replace a more recent checkpoint with its older one
            shutil.rmtree(root / name, ignore_errors=True)
            return current.path
        pointer_tmp = root / f".tmp-{POINTER}-{uuid.uuid4().hex[:12]}"
        _write_file(pointer_tmp, name.encode() + b"\n")
        os.replace(pointer_tmp, root / POINTER)
        fsync_dir(root)
        _remove_old(root, keep=name)
    return root / name


@contextlib.contextmanager
def _swap_lock(root: Path) -> Iterator[None]:
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_old(root: Path, keep: str) -> None:
    """Drop other checkpoint directories and leftovers of crashed writers; a reader that still maps
    files of a removed one keeps them until it closes them. Called under the swap lock."""
    for entry in root.iterdir():
        stale_tmp = entry.name.startswith(f".tmp-{POINTER}-") or (
            entry.name.startswith(".tmp-ckpt-") and time.time() - entry.stat().st_mtime > TMP_GRACE_SECS)
        if entry.name != keep and (DIR_RE.match(entry.name) or stale_tmp):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def current_manifest(slug: str) -> Manifest:
    """The manifest of the tenant's current checkpoint, or CheckpointUnusable saying why not."""
    root = checkpoint_root(slug)
    try:
        name = (root / POINTER).read_text().strip()
    except FileNotFoundError:
        raise CheckpointOutdated(NO_CHECKPOINT) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointUnusable(f"unreadable {POINTER}: {exc}") from None
    if not DIR_RE.match(name):
        raise CheckpointUnusable(f"{POINTER} names no checkpoint directory")
    path = root / name
    try:
        raw = orjson.loads((path / "manifest.json").read_bytes())
        if raw.get("format") != FORMAT or raw.get("format_version") not in READABLE_VERSIONS:
            raise CheckpointUnusable("unknown checkpoint format")
        return Manifest(generation=int(raw["generation"]), version=int(raw["version"]), dim=int(raw["dim"]),
                        metric=str(raw["metric"]), count=int(raw["count"]), identity=str(raw["identity"]),
                        path=path)
    except CheckpointUnusable:
        raise
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointUnusable(f"unreadable manifest: {exc}") from None


def _row_file(path: Path, n: int, dim: int) -> RowStore:
    """The rows of an emb.npy file, read in place (after checking its header)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise CheckpointUnusable(f"emb.npy: unsupported .npy version {version}")
        offset = fh.tell()
    if shape != (n, dim) or fortran or dtype != np.dtype("<f4"):
        raise CheckpointUnusable(f"emb.npy: expected ({n}, {dim}) float32 rows, got {shape} {dtype}")
    return RowStore.over_file(path, offset, n, dim, settings.AGENT_MEM_DATA_DIR)


def read_checkpoint(manifest: Manifest) -> TenantIndex:
    """Load a checkpoint after checking every file's size and CRC-32 against its manifest."""
    try:
        raw = orjson.loads((manifest.path / "manifest.json").read_bytes())
        files = raw["files"]
        wanted = optional_columns(manifest.metric)
        optional = [c for c in wanted if f"{c}.npy" in files]
        keyword = [c for c in KEYWORD_COLUMNS if f"{c}.npy" in files]
        if keyword and len(keyword) != len(KEYWORD_COLUMNS):
            raise CheckpointUnusable("some keyword column files are missing")
        columns = [*ARRAY_COLUMNS, *keyword, *(optional if len(optional) == len(wanted) else ())]
        for fname in (*(f"{c}.npy" for c in columns), "meta.json"):
            expected, path = files[fname], manifest.path / fname
            if path.is_symlink() or path.stat().st_size != expected["bytes"] or _crc32(path) != expected["crc32"]:
                raise CheckpointUnusable(f"{fname} does not match the manifest (size or checksum)")
        quantized = len(optional) == len(wanted)
        arrays: dict = {c: np.load(manifest.path / f"{c}.npy", mmap_mode="c" if c in MAPPED else None,
                                   allow_pickle=False) for c in columns if not (quantized and c == "emb")}
        meta = orjson.loads((manifest.path / "meta.json").read_bytes())
        if quantized:
            arrays["emb"] = _row_file(manifest.path / "emb.npy", int(meta["n"]), int(meta["dim"]))
        index = from_arrays(arrays, meta, spill_dir=str(settings.AGENT_MEM_DATA_DIR))
    except CheckpointUnusable:
        raise
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointUnusable(f"corrupt checkpoint: {exc}") from None
    if (index.dim, index.metric, len(index)) != (manifest.dim, manifest.metric, manifest.count):
        raise CheckpointUnusable("checkpoint contents disagree with its manifest")
    return index
