"""Shared helpers of the reliability suite: error-shape checks and the figures each check records."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
FIGURES_DIR = Path(os.environ.get("RELIABILITY_FIGURES_DIR", ROOT / "build" / "reliability"))


def record(check: str, **figures: Any) -> None:
    """Write a check's last figures to build/reliability/<check>.json (docs/reliability.md quotes them)."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    body = {"check": check, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    (FIGURES_DIR / f"{check}.json").write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")


def error_message(response: httpx.Response) -> str:
    """The message of a JSON `{"error": "..."}` body; fails on anything else (HTML, empty, other keys)."""
    assert response.headers.get("content-type", "").startswith("application/json"), (
        response.status_code, response.headers.get("content-type"), response.text[:300])
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str), body
    assert body["error"], body
    return body["error"]


def assert_client_error(response: httpx.Response, *, field: str | None = None,
                        status: int | tuple[int, ...] = (400, 413)) -> str:
    """A 4xx JSON error (never 5xx) whose message names `field` when given."""
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    message = error_message(response)
    if field is not None:
        assert field in message, (field, message)
    return message
