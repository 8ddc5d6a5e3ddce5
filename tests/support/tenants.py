"""Helpers for talking to a live server as a tenant."""

from __future__ import annotations

import uuid

import httpx
import numpy as np

# The task_id of the one episode the in-process `other_tenant` ("rival") always holds (tests/conftest.py).
RIVAL_TASK_ID = "rival-secret"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def unique_slug(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def episode(dim: int, rng: np.random.Generator, **fields) -> dict:
    body = {"task_id": f"task_{rng.integers(1000)}", "state_embedding": rng.normal(size=dim).tolist(),
            "reward": float(rng.normal())}
    body.update(fields)
    return body


def fresh_client(base_url: str, key: str) -> httpx.Client:
    """No keep-alive: each request opens a new connection, so gunicorn spreads them over workers."""
    return httpx.Client(base_url=base_url, headers=auth(key), timeout=30,
                        limits=httpx.Limits(max_keepalive_connections=0))
