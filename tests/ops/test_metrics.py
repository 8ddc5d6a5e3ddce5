"""/metrics in a single process: our names, exact counts, the DB-derived gauge, no slugs."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.django_db(transaction=True)
DIM = 8


TOKEN = "scrape-token-for-tests"


@pytest.fixture(autouse=True)
def scrape_token(settings):
    """Scrapes carry the token; no source network is allowed, so it is the token that admits them."""
    settings.AGENT_MEM_METRICS_TOKEN = TOKEN
    settings.AGENT_MEM_METRICS_ALLOW = ()


def samples(client) -> dict[str, float]:
    r = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert r.status_code == 200
    return {s.name: s.value for f in text_string_to_metric_families(r.content.decode()) for s in f.samples
            if not s.labels}


def test_counts_move_by_exactly_what_was_done(client, api, make_tenant):
    _, key = make_tenant("metered", dim=DIM)
    make_tenant("empty", dim=DIM)
    before = samples(client)
    c = api.as_key(key)
    body = {"task_id": "t", "state_embedding": [1.0] * DIM, "reward": 1.0, "id": "6a1c1a9e-4a4f-4a55-9d39-1b0d2f3c4d5e"}
    assert c.post("/v1/episodes", body, format="json").status_code == 201
    assert c.post("/v1/episodes", body, format="json").status_code == 200  # retry: not newly stored
    assert c.post("/v1/episodes/batch", {"episodes": [{**body, "id": None} for _ in range(1)]},
                  format="json").status_code == 400
    assert c.post("/v1/query", {"query_embedding": [1.0] * DIM}, format="json").status_code == 200
    assert c.post("/v1/query", {"query_embedding": [1.0]}, format="json").status_code == 400
    after = samples(client)
    assert after["agent_mem_store_episodes_total"] - before["agent_mem_store_episodes_total"] == 1
    assert after["agent_mem_query_total"] - before["agent_mem_query_total"] == 1
    assert after["agent_mem_requests_total"] - before["agent_mem_requests_total"] == 5
    assert after["agent_mem_tenants_active"] == 1
    assert after["agent_mem_index_cache_bytes"] > 0
    text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    assert "metered" not in text and key not in text
