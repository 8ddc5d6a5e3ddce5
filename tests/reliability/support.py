"""Shared helpers of the reliability suite: error-shape checks and the figures each check records."""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.support.tenants import auth

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


@dataclass
class BatchLedger:
    """What batch writers under faults saw: each batch's label, acknowledged (201) or not, and how
    often each outcome came ("201", "503", "ConnectError", ...)."""
    acked: list[str] = field(default_factory=list)
    unacked: list[str] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def transport_errors(self) -> int:
        return sum(n for outcome, n in self.statuses.items() if not outcome.isdigit())

    def server_errors(self) -> int:
        return sum(n for outcome, n in self.statuses.items() if outcome.isdigit() and int(outcome) >= 500)


def write_batches(url: str, key: str, n: int, stop: threading.Event, ledger: BatchLedger,
                  body: Callable[[str, np.random.Generator], dict], label: str) -> None:
    """Writer `n`: POST /v1/episodes/batch bodies labelled f"{label}{n}-{i:05d}", one new connection
    each (a killed worker cuts exactly one batch), until `stop`; every error body must be JSON."""
    rng = np.random.default_rng(n)
    with httpx.Client(base_url=url, headers=auth(key), timeout=60,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:
        i = 0
        while not stop.is_set():
            name = f"{label}{n}-{i:05d}"
            i += 1
            try:
                response = client.post("/v1/episodes/batch", json=body(name, rng))
            except httpx.TransportError as exc:
                with ledger.lock:
                    ledger.unacked.append(name)
                    ledger.statuses[type(exc).__name__] += 1
                time.sleep(0.05)
                continue
            with ledger.lock:
                ledger.statuses[str(response.status_code)] += 1
                (ledger.acked if response.status_code == 201 else ledger.unacked).append(name)
            if response.status_code >= 400:
                error_message(response)
