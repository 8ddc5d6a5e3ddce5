"""Embeddings as base64 of little-endian float32 (docs/api.md §3): accepted wherever an array of
numbers is, stored bit for bit, and given back the same way on request."""

from __future__ import annotations

import base64
import uuid

import numpy as np
import pytest

from episodes.models import Episode
from tests.episodes.bodies import DIM, ep

pytestmark = pytest.mark.django_db(transaction=True)


def b64(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode()


def unb64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text, validate=True), "<f4")


def awkward_vectors(n: int) -> np.ndarray:
    """float32 values whose shortest decimal is long, plus a subnormal and a negative zero."""
    rng = np.random.default_rng(7)
    out = rng.standard_normal((n, DIM)).astype(np.float32) * np.float32(1 / 3)
    out[0, 1], out[0, 2] = np.float32(1e-45), np.float32(-0.0)
    return out


def test_base64_round_trips_bit_for_bit_through_store_get_list_and_query(api, tenant):
    t, key = tenant
    client = api.as_key(key)
    vectors = awkward_vectors(30)
    ids = [str(uuid.uuid4()) for _ in vectors]
    episodes = [ep(id=i, state_embedding=b64(v), timestamp=k) for k, (i, v) in enumerate(zip(ids, vectors, strict=True))]
    r = client.post("/v1/episodes/batch", {"episodes": episodes}, format="json")
    assert r.status_code == 201, r.content
    stored = {str(e.id): bytes(e.embedding) for e in Episode.objects.filter(tenant=t)}
    assert all(stored[i] == v.astype("<f4").tobytes() for i, v in zip(ids, vectors, strict=True))

    got = client.get(f"/v1/episodes/{ids[0]}", {"embedding_format": "base64"}).json()["state_embedding"]
    assert unb64(got).tobytes() == vectors[0].tobytes()
    as_floats = client.get(f"/v1/episodes/{ids[0]}").json()["state_embedding"]
    assert np.asarray(as_floats, np.float32).tobytes() == vectors[0].tobytes()

    page = client.get("/v1/episodes", {"include_embedding": "true", "embedding_format": "base64",
                                       "limit": 100}).json()["episodes"]
    assert {e["id"]: unb64(e["state_embedding"]).tobytes() for e in page} == stored

    for query in (b64(vectors[5]), vectors[5].tolist()):
        r = client.post("/v1/query", {"query_embedding": query, "top_k": 1, "include_embedding": True,
                                      "embedding_format": "base64"}, format="json")
        assert r.status_code == 200, r.content
        hit = r.json()["episodes"][0]
        assert hit["id"] == ids[5] and unb64(hit["state_embedding"]).tobytes() == vectors[5].tobytes()
        assert hit["score"] == pytest.approx(1.0, abs=1e-6)


def test_one_episode_and_mixed_batches_and_the_same_content_either_way(api, tenant):
    t, key = tenant
    client = api.as_key(key)
    v = awkward_vectors(3)
    one = str(uuid.uuid4())
    assert client.post("/v1/episodes", ep(id=one, state_embedding=b64(v[0])), format="json").status_code == 201
    # The same float32 values as numbers: the same content, so a retry in the other form is a 200.
    again = client.post("/v1/episodes", ep(id=one, state_embedding=v[0].tolist()), format="json")
    assert again.status_code == 200, again.content
    mixed = [ep(state_embedding=b64(v[1])), ep(state_embedding=v[2].tolist())]
    r = client.post("/v1/episodes/batch", {"episodes": mixed}, format="json")
    assert r.status_code == 201, r.content
    rows = {str(e.id): bytes(e.embedding) for e in Episode.objects.filter(tenant=t)}
    assert [rows[i] for i in r.json()["ids"]] == [v[1].tobytes(), v[2].tobytes()]


def test_a_wrong_length_names_the_dim_and_stores_nothing(api, tenant):
    t, key = tenant
    client = api.as_key(key)
    r = client.post("/v1/episodes/batch", {"episodes": [ep(), ep(state_embedding=b64(np.ones(DIM + 1)))]},
                    format="json")
    assert r.status_code == 400
    assert "episodes[1].state_embedding" in r.json()["error"] and f"{4 * DIM} bytes" in r.json()["error"]
    assert Episode.objects.filter(tenant=t).count() == 0
