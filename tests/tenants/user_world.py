"""A tenant with end users alice and bob, their episodes, user-bound keys and tokens (in process)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from django.core.management import call_command
from memcloud_client import mint_user_token
from rest_framework.test import APIClient

DIM = 4
SLUG = "acme"


def client(raw: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return c


def command(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def body(n: int, **fields) -> dict:
    return {"task_id": f"task_{n}", "state_embedding": [1.0, float(n % 3), 0.5, -1.0], "reward": float(n % 4),
            "timestamp": 1_000 + n, "tags": ["t"], **fields}


@dataclass
class World:
    admin: APIClient
    signing_key: str
    keys: dict[str, str] = field(default_factory=dict)  # user -> user-bound write key
    ids: dict[str | None, list[str]] = field(default_factory=dict)  # user (None: no user) -> episode ids

    def credential(self, kind: str, user: str, scope: str = "write") -> str:
        if kind == "key":
            return self.keys[user] if scope == "write" else command("issuekey", SLUG, "--user-id", user,
                                                                      "--scope", scope)
        return mint_user_token(self.signing_key, SLUG, user, scope, 600)

    def snapshot(self) -> dict[str, dict]:
        """Every episode of the tenant as the tenant-wide key sees it."""
        out, cursor = {}, None
        while True:
            page = self.admin.get("/v1/episodes", {"limit": 1000, "include_embedding": "true",
                                                   **({"cursor": cursor} if cursor else {})}).json()
            out.update({e["id"]: e for e in page["episodes"]})
            cursor = page["next_cursor"]
            if cursor is None:
                return out


def make_world(make_tenant) -> World:
    """alice and bob with 4 episodes each, 2 episodes of no user; keys and a signing key."""
    _, admin_key = make_tenant(SLUG, dim=DIM)
    world = World(admin=client(admin_key), signing_key=command("signingkey", SLUG))
    for user in ("alice", "bob"):
        world.keys[user] = command("issuekey", SLUG, "--user-id", user)
    n = 0
    for user, count in (("alice", 4), ("bob", 4), (None, 2)):
        bodies = [body(n + i, user_id=user) for i in range(count)]
        n += count
        r = world.admin.post("/v1/episodes/batch", {"episodes": bodies}, format="json")
        assert r.status_code == 201, r.content
        world.ids[user] = r.json()["ids"]
    return world
