"""Snapshot files (docs/api.md §4): names, paths confined to the tenant's folder, and the JSON Lines
format, written and read as streams.

A snapshot is a header line `{"format": "memcloud-snapshot", "version": 1, "tenant", "dim",
"episodes", "created"}` then one episode per line in store order. Embeddings are written as the
float32 values widened to float64 (`tolist()`), whose shortest repr reads back to the same float32.
Files are written to a hidden temporary name in the same folder, fsynced, renamed over the name and
the folder fsynced: a crash leaves the old snapshot or the new one, never a half one.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from django.conf import settings

from core.errors import InvalidInput, NotFound

FORMAT = "memcloud-snapshot"
FORMAT_VERSION = 1
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
HEADER_KEYS = {"format", "version", "tenant", "dim", "episodes", "created"}
MAX_HEADER_BYTES = 4096
# A line holds one episode: metadata 64 KiB + steps 1 MiB + embedding; anything longer is not ours.
MAX_LINE_BYTES = 4 << 20
TMP_PREFIX = ".tmp-"
STALE_TMP_SECS = 6 * 3600  # far longer than any save takes


@dataclass(frozen=True)
class Header:
    tenant: str
    dim: int
    episodes: int
    created: str


def validate_name(name: Any) -> str:
    """A snapshot name, never a path: 400 naming `path` for anything else."""
    if not isinstance(name, str):
        raise InvalidInput("path: must be a string")
    if not NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidInput(
            "path: must be a snapshot name (1 to 128 of A-Z a-z 0-9 . _ -, starting with a letter or digit, "
            "no '..'), not a file path")
    return name


def snapshots_dir(slug: str, *, create: bool = False) -> Path:
    """The tenant's snapshot folder, refusing one that escapes the data directory (symlinks)."""
    root = Path(settings.AGENT_MEM_DATA_DIR).resolve()
    folder = root / slug / "snapshots"

    def check() -> None:
        for part in (folder.parent, folder):
            if part.is_symlink() or (part.exists() and part.resolve() != part):
                raise InvalidInput("path: the tenant's snapshot folder is not a plain folder in the data directory")

    check()
    if create:
        folder.mkdir(parents=True, exist_ok=True)
        check()
    return folder


def snapshot_path(slug: str, name: str, *, create_dir: bool = False) -> Path:
    folder = snapshots_dir(slug, create=create_dir)
    path = folder / validate_name(name)
    if path.parent != folder:  # cannot happen after validate_name; kept as the containment check
        raise InvalidInput("path: outside the tenant's snapshot folder")
    return path


def open_snapshot(slug: str, name: str) -> IO[bytes]:
    """Open an existing snapshot for reading: 404 if absent; symlinks and non-files are refused."""
    path = snapshot_path(slug, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise NotFound(f"path: no snapshot named {name!r}") from None
    except OSError:
        raise InvalidInput(f"path: {name!r} is not a readable snapshot file") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidInput(f"path: {name!r} is not a snapshot file")
    return os.fdopen(fd, "rb")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files of saves that died (a crash, kill -9) long enough ago to be no one's."""
    cutoff = time.time() - STALE_TMP_SECS
    for entry in os.scandir(folder):
        if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)


def write_snapshot(slug: str, name: str, *, dim: int, count: int, episodes: Iterable[dict]) -> int:
    """Stream `count` episodes (JSON-ready dicts) into the named snapshot atomically; returns its size.
    Raises ValueError if the iterable does not yield exactly `count` episodes."""
    path = snapshot_path(slug, name, create_dir=True)
    _remove_stale_temporaries(path.parent)
    tmp = path.parent / f"{TMP_PREFIX}{name}-{uuid.uuid4().hex[:12]}"
    header = {"format": FORMAT, "version": FORMAT_VERSION, "tenant": slug, "dim": dim, "episodes": count,
              "created": now_iso()}
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
            fh.write(orjson.dumps(header) + b"\n")
            written = 0
            for episode in episodes:
                fh.write(orjson.dumps(episode) + b"\n")
                written += 1
            if written != count:
                raise ValueError(f"expected {count} episodes, read {written}")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path.stat().st_size


def parse_header(line: bytes, *, name: str) -> Header:
    where = f"path: snapshot {name!r} header"
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise InvalidInput(f"{where}: not JSON") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise InvalidInput(f"{where}: not a {FORMAT} file")
    if raw.get("version") != FORMAT_VERSION:
        raise InvalidInput(f"{where}: unsupported version {raw.get('version')!r}")
    if set(raw) != HEADER_KEYS:
        raise InvalidInput(f"{where}: must have exactly the keys {sorted(HEADER_KEYS)}")
    for key, kind in (("dim", int), ("episodes", int), ("tenant", str), ("created", str)):
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, kind) or (kind is int and value < 0):
            raise InvalidInput(f"{where}: {key} is invalid")
    return Header(tenant=raw["tenant"], dim=raw["dim"], episodes=raw["episodes"], created=raw["created"])


def _lines(fh: IO[bytes], name: str) -> Iterator[bytes]:
    while True:
        line = fh.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES:
            raise InvalidInput(f"path: snapshot {name!r} has a line longer than {MAX_LINE_BYTES} bytes")
        if not line.endswith(b"\n"):
            raise InvalidInput(f"path: snapshot {name!r} is truncated (last line has no newline)")
        yield line


def read_header(fh: IO[bytes], name: str) -> Header:
    first = fh.readline(MAX_HEADER_BYTES + 1)
    if not first:
        raise InvalidInput(f"path: snapshot {name!r} is empty")
    if len(first) > MAX_HEADER_BYTES or not first.endswith(b"\n"):
        raise InvalidInput(f"path: snapshot {name!r} header: not a {FORMAT} header line")
    return parse_header(first, name=name)


def read_episodes(fh: IO[bytes], header: Header, name: str) -> Iterator[tuple[int, dict, bytes]]:
    """(line number, raw episode object, line) for every line after the header; checks the count."""
    seen = 0
    for number, line in enumerate(_lines(fh, name), start=2):
        seen += 1
        if seen > header.episodes:
            raise InvalidInput(f"path: snapshot {name!r} has more episodes than its header's {header.episodes}")
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise InvalidInput(f"path: snapshot {name!r} line {number}: not JSON") from None
        if not isinstance(raw, dict):
            raise InvalidInput(f"path: snapshot {name!r} line {number}: not a JSON object")
        yield number, raw, line
    if seen != header.episodes:
        raise InvalidInput(f"path: snapshot {name!r} is truncated: {seen} of {header.episodes} episodes")


def list_snapshots(slug: str) -> list[dict]:
    """The tenant's snapshots with the count and time from each header line (not the whole file)."""
    folder = snapshots_dir(slug)
    if not folder.is_dir():
        return []
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not NAME_RE.fullmatch(entry.name) or ".." in entry.name or not entry.is_file(follow_symlinks=False):
            continue
        episodes = created = None
        try:
            with open_snapshot(slug, entry.name) as fh:
                size = os.fstat(fh.fileno()).st_size
                with contextlib.suppress(InvalidInput):  # listed without figures: a load says what is wrong
                    header = read_header(fh, entry.name)
                    episodes, created = header.episodes, header.created
        except (InvalidInput, NotFound, OSError):
            continue  # removed or replaced by something else meanwhile
        out.append({"path": entry.name, "episodes": episodes, "bytes": size, "created": created})
    return out
