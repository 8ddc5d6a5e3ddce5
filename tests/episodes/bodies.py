"""Request bodies shared by the in-process episode tests (tenants made by `make_tenant` have dim 8)."""

from __future__ import annotations

DIM = 8


def vec(*head: float) -> list[float]:
    """A DIM-long embedding starting with `head`, zeros after."""
    v = [0.0] * DIM
    v[: len(head)] = head
    return v


def ep(**fields) -> dict:
    """A valid episode body, with `fields` overriding the defaults."""
    body = {"task_id": "task_1", "state_embedding": vec(1.0), "reward": 1.0}
    body.update(fields)
    return body
