"""Audit log (docs/api.md §6): one JSON object per line, one write() per line with O_APPEND, so
lines from many workers never interleave."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings

logger = logging.getLogger("memcloud.audit")
_fd: int | None = None
_fd_path: str | None = None


def _descriptor() -> int | None:
    global _fd, _fd_path
    path = settings.AGENT_MEM_AUDIT_LOG
    if not path:
        return None
    if _fd is None or _fd_path != path:
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        _fd_path = path
    return _fd


def audit(op: str, *, tenant_id: str | None, key_prefix: str | None, **fields: Any) -> None:
    """Append one audit line; fields that are None are left out, as in the seed's format."""
    try:
        fd = _descriptor()
    except OSError:
        logger.exception("cannot open audit log")
        return
    if fd is None:
        return
    entry: dict[str, Any] = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "tenant_id": tenant_id,
        "op": op,
    }
    entry.update({k: v for k, v in fields.items() if v is not None})
    entry["key_prefix"] = key_prefix
    line = orjson.dumps(entry) + b"\n"
    try:
        os.write(fd, line)  # O_APPEND: atomic position + write; unbuffered, so flushed at once
    except OSError:
        logger.exception("cannot write audit log")
