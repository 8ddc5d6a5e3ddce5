"""Binary embeddings on the wire and the fast encoder: what the client sends is what is stored,
bit for bit, and what it reads back is the stored float32 values."""

import base64
import json

import numpy as np
import pytest
from memcloud_client import ValidationError, _http
from memcloud_client._api import episode_body, floats, vector, vectors

from .helpers import DIM, vec

pytestmark = pytest.mark.e2e


def awkward(seed: int) -> np.ndarray:
    """float32 values with long shortest decimals, a subnormal and a negative zero."""
    out = vec(seed) * np.float32(1 / 3)
    out[1], out[2] = np.float32(1e-45), np.float32(-0.0)
    return out


def test_embeddings_are_sent_as_base64_of_little_endian_float32():
    values = awkward(1)
    for given in (values, values.astype(np.float64), values.tolist(), tuple(values.tolist())):
        sent = vector(given)
        assert isinstance(sent, str)
        assert base64.b64decode(sent) == values.astype("<f4").tobytes()
    assert floats(vector(values)) == values.tolist()
    with pytest.raises(ValidationError, match="query_embedding"):
        vector([1e39] * DIM, "query_embedding")
    with pytest.raises(ValidationError):
        vector(np.full(DIM, np.nan))


def test_a_chunk_of_embeddings_encodes_as_each_alone():
    """store_batch encodes a chunk's embeddings together (vectors()): the same strings as vector()
    gives each, with or without base64 padding, for numpy rows of any real dtype and mixed inputs."""
    rng = np.random.default_rng(4)
    for dim in (DIM, 3, 5, 384):
        rows = [rng.standard_normal(dim).astype(np.float32) for _ in range(9)]
        rows[1] = np.float32(1 / 3) * rows[1].astype(np.float64)
        cases = [rows, [r.astype(np.float64) for r in rows], [np.arange(dim)] * 3, rows[:1],
                 [rows[0], rows[1].tolist(), tuple(rows[2].tolist())], [rows[0], rows[1][:-1]]]
        for values in cases:
            assert vectors(values) == [vector(v) for v in values], (dim, values)
        for bad in (np.inf, np.nan, 1e39):
            broken = [r.astype(np.float64) for r in rows]
            broken[4][-1] = bad
            with pytest.raises(ValidationError, match="state_embedding: every value must be a finite"):
                vectors(broken)


def test_stored_and_read_back_bit_for_bit(client):
    episodes = [{"task_id": f"w{i}", "state_embedding": awkward(i), "reward": 0.5} for i in range(7)]
    ids = client.store_batch(episodes, batch_size=3)
    for episode_id, episode in zip(ids, episodes, strict=True):
        got = client.get(episode_id).state_embedding
        assert np.asarray(got, np.float32).tobytes() == episode["state_embedding"].tobytes()
    hits = client.query(awkward(3), top_k=1, include_embedding=True)
    assert hits[0].id == ids[3] and np.asarray(hits[0].state_embedding, np.float32).tobytes() == awkward(3).tobytes()
    page = client.list_episodes(include_embedding=True, limit=10)
    by_id = {e.id: np.asarray(e.state_embedding, np.float32).tobytes() for e in page.episodes}
    assert by_id == {i: e["state_embedding"].tobytes() for i, e in zip(ids, episodes, strict=True)}


def test_a_stored_episode_read_back_can_be_stored_again_unchanged(client, other_client):
    original = client.get(client.store("again", awkward(9), 0.25))
    (copied,) = other_client.store_batch([original])
    assert other_client.get(copied).state_embedding == original.state_embedding


@pytest.mark.skipif(_http.orjson is None, reason="the fast extra is not installed")
def test_the_fast_encoder_writes_what_json_would_and_still_refuses_nan():
    body = episode_body({"task_id": "t", "state_embedding": awkward(2), "reward": 0.1,
                         "metadata": {"none": None, "text": "null", "n": [1, 2.5, "é"]}})
    assert json.loads(_http.encode(body)) == body
    for bad in (float("nan"), float("inf"), [1.0, float("-inf")], {"deep": [{"x": float("nan")}]}):
        with pytest.raises(ValidationError, match="non-finite"):
            _http.encode({"task_id": "t", "reward": 1.0, "metadata": {"v": bad, "other": None}})
    assert json.loads(_http.encode({"big": 2**70})) == {"big": 2**70}  # beyond orjson: json.dumps


def test_non_finite_metadata_is_refused_before_sending(client):
    with pytest.raises(ValidationError):
        client.store("t", vec(5), 0.5, metadata={"score": float("nan")})
    assert client.stats().episodes == 0
