"""Text memories through the tenant's embedder (docs/api.md §2.3, §4): episodes stored with `text`
alone, queries by `query_text`, with the packaged all-MiniLM-L6-v2 in process and through a real
OpenAI-compatible server (tests/support/embedding_server.py); and what a tenant without an embedder
or with a failing one answers."""

from __future__ import annotations

import numpy as np
import pytest

from episodes.models import Episode
from tenants.services import key_issue, tenant_create
from tests.embedders.conftest import minilm, minilm_path, provider  # noqa: F401 - fixtures
from tests.support.server import free_port

pytestmark = pytest.mark.django_db

TOPICS = {
    "tests": ["The flaky unit test passed after pinning the random seed",
              "Fixed the failing pytest fixture by resetting the database between tests",
              "The integration test suite timed out on the CI runner",
              "Added a regression test for the parser crash on empty input",
              "Mocked the clock so the expiry test no longer fails at midnight"],
    "deploy": ["Rolled back the production deploy after the health check failed",
               "The Kubernetes rollout stalled because the new pods crashed on start",
               "Blue-green deployment switched traffic to the new release",
               "The Helm upgrade failed on a missing secret in the staging cluster",
               "Canary release showed higher error rates, so the deploy was paused"],
    "cooking": ["Simmered the tomato sauce for an hour with basil and garlic",
                "The bread dough needs to rise twice before baking",
                "Roasted the vegetables at high heat until caramelised",
                "Whisked eggs and sugar for the sponge cake batter",
                "Marinated the chicken overnight in yoghurt and spices"],
    "travel": ["Booked a night train from Vienna to Venice",
               "The flight to Lisbon was delayed by three hours",
               "Packed a light bag for the hiking trip in the Alps",
               "Renewed the passport before the trip to Japan",
               "Found a cheap hostel near the old town in Prague"],
}
QUERIES = {"tests": "why did my unit tests fail in CI?", "deploy": "the release to production went wrong",
           "cooking": "a recipe for dinner in the oven", "travel": "planning a holiday abroad by plane"}


def client_for(tenant) -> object:
    from rest_framework.test import APIClient

    _, raw = key_issue(tenant=tenant, scope="admin")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture(params=["local-minilm", "openai"])
def text_tenant(request, minilm):  # noqa: F811 - the fixture imported above
    """A tenant whose embedder is the packaged MiniLM, in process or served by a real server."""
    if request.param == "openai":
        server = request.getfixturevalue("provider")
        return tenant_create(slug="texts", embedder=f"openai:{server.model}")
    return tenant_create(slug="texts", embedder="local-minilm")


def test_episodes_with_text_alone_are_found_by_meaning_as_the_model_ranks_them(text_tenant, minilm):  # noqa: F811
    client = client_for(text_tenant)
    texts = [(topic, text) for topic, items in TOPICS.items() for text in items]
    batch = [{"task_id": f"{topic}-{i}", "reward": 1.0, "text": text} for i, (topic, text) in enumerate(texts)]
    r = client.post("/v1/episodes/batch", {"episodes": batch}, format="json")
    assert r.status_code == 201, r.content
    ids = r.json()["ids"]
    stored = {str(e.id): e for e in Episode.objects.filter(tenant=text_tenant)}
    model = minilm.embed([text for _, text in texts])
    for i, episode_id in enumerate(ids):  # the vector is the model's for the text
        np.testing.assert_allclose(np.frombuffer(bytes(stored[episode_id].embedding), "<f4"), model[i], atol=1e-4)
    for topic, query in QUERIES.items():
        r = client.post("/v1/query", {"query_text": query, "top_k": len(texts)}, format="json")
        assert r.status_code == 200, r.content
        got = [h["id"] for h in r.json()["episodes"]]
        q = minilm.embed([query])[0]
        scores = model @ q / np.linalg.norm(model, axis=1) / np.linalg.norm(q)
        assert got == [ids[i] for i in np.argsort(-scores, kind="stable")], topic  # brute force, same model
        assert r.json()["episodes"][0]["task_id"].startswith(topic)


def test_hybrid_by_query_text_alone_uses_the_embedders_vector(text_tenant):
    client = client_for(text_tenant)
    texts = [f"Deploy failed with error ERR_47{i:02d} in the staging cluster" for i in range(10)]
    r = client.post("/v1/episodes/batch", {"episodes": [{"task_id": "t", "reward": 0, "text": t} for t in texts]},
                    format="json")
    ids = r.json()["ids"]
    hits = client.post("/v1/query", {"mode": "hybrid", "query_text": "deploy error ERR_4707", "top_k": 5},
                       format="json").json()["episodes"]
    assert ids[7] in [h["id"] for h in hits] and all(h["vector_rank"] for h in hits)


def test_a_text_alone_retried_with_its_id_is_stored_once(text_tenant):
    client = client_for(text_tenant)
    body = {"id": "0b0c2a6e-6d3f-4b57-9d0b-3c1f2e5a7d11", "task_id": "t", "reward": 0.5, "text": "a memory"}
    assert client.post("/v1/episodes", body, format="json").status_code == 201
    assert client.post("/v1/episodes", body, format="json").status_code == 200
    assert client.post("/v1/episodes", {**body, "text": "another"}, format="json").status_code == 409
    assert Episode.objects.filter(tenant=text_tenant).count() == 1


def test_without_an_embedder_text_alone_is_a_400_naming_the_field(make_tenant, api):
    tenant, raw = make_tenant("vectors", dim=4)
    client = api.as_key(raw)
    r = client.post("/v1/episodes", {"task_id": "t", "reward": 0, "text": "words"}, format="json")
    assert r.status_code == 400 and r.json()["error"].startswith("state_embedding: required"), r.content
    batch = [{"task_id": "t", "reward": 0, "state_embedding": [1, 0, 0, 0]}, {"task_id": "t", "reward": 0, "text": "w"}]
    r = client.post("/v1/episodes/batch", {"episodes": batch}, format="json")
    assert r.status_code == 400 and r.json()["error"].startswith("episodes[1].state_embedding: required"), r.content
    r = client.post("/v1/episodes", {"task_id": "t", "reward": 0}, format="json")
    assert r.status_code == 400 and r.json()["error"].startswith("state_embedding:"), r.content
    r = client.post("/v1/query", {"query_text": "words"}, format="json")
    assert r.status_code == 400 and r.json()["error"].startswith("query_embedding: required"), r.content
    assert not Episode.objects.filter(tenant=tenant).exists()


def test_an_unreachable_provider_is_a_503_and_stores_nothing(settings, db):
    settings.AGENT_MEM_EMBEDDINGS_URL = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    settings.AGENT_MEM_EMBEDDINGS_RETRIES = 0
    from embedders import registry

    registry.reset(kind="openai")
    tenant = tenant_create(slug="down", embedder="openai:any-model@384")
    client = client_for(tenant)
    r = client.post("/v1/episodes", {"task_id": "t", "reward": 0, "text": "words"}, format="json")
    assert r.status_code == 503 and "Retry-After" in r and r.json()["error"].startswith("embedder:"), r.content
    r = client.post("/v1/query", {"query_text": "words"}, format="json")
    assert r.status_code == 503 and r.json()["error"].startswith("embedder:"), r.content
    tenant.state.refresh_from_db()
    assert not Episode.objects.filter(tenant=tenant).exists() and tenant.state.version == 0
