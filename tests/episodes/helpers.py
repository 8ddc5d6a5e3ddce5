"""API helpers shared by the in-process episode tests: store, list and query through the DRF test
client, and a client of its own for a key."""

from __future__ import annotations

from tests.episodes.bodies import vec


def store(client, *episodes: dict) -> list[str]:
    r = client.post("/v1/episodes/batch", {"episodes": list(episodes)}, format="json")
    assert r.status_code == 201, r.content
    return r.json()["ids"]


def listed(client, **params) -> list[str]:
    """Every id the listing yields, following next_cursor to the end."""
    ids, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = client.get("/v1/episodes", query)
        assert r.status_code == 200, r.content
        body = r.json()
        ids += [e["id"] for e in body["episodes"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


def query_ids(client, **flt) -> list[str]:
    r = client.post("/v1/query", {"query_embedding": vec(1.0), "top_k": 100, **flt}, format="json")
    assert r.status_code == 200, r.content
    return [h["id"] for h in r.json()["episodes"]]


def client_for(raw: str):
    """A client of its own (the `api` fixture's client is shared: as_key changes it)."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client
