"""Episode text and keyword and hybrid queries through the /v1 API in process (DRF test client,
real database): storage and reads of text, BM25 against a brute-force oracle over the stored texts,
the error-code case, and the errors of the query modes."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from episodes import checkpoint
from episodes.cache import cache
from episodes.models import Episode
from tenants.models import TenantState
from tests.episodes.bodies import DIM, ep, vec
from tests.support.bm25 import bm25_oracle

pytestmark = pytest.mark.django_db(transaction=True)
WORDS = ["disk", "full", "Retry", "timeout", "ERR_4700", "err_4701", "the", "the", "a", "of", "Straße", "strasse"]


@pytest.fixture(autouse=True)
def data_dir(tmp_path, settings):
    settings.AGENT_MEM_DATA_DIR = tmp_path / "data"
    settings.AGENT_MEM_AUDIT_LOG = str(tmp_path / "audit.jsonl")
    return tmp_path / "data"


def query(client, **body):
    r = client.post("/v1/query", body, format="json")
    assert r.status_code == 200, r.content
    return r.json()["episodes"]


def error(client, body, status=400):
    r = client.post("/v1/query", body, format="json")
    assert r.status_code == status, r.content
    return r.json()["error"]


def test_text_is_stored_returned_listed_and_never_patched(api, tenant):
    t, key = tenant
    client = api.as_key(key)
    eid = str(uuid.uuid4())
    body = ep(id=eid, text="Disk full: ERR_4700 — Straße", timestamp=5)
    assert client.post("/v1/episodes", body, format="json").status_code == 201
    assert client.post("/v1/episodes", body, format="json").status_code == 200  # an idempotent retry
    conflict = client.post("/v1/episodes", dict(body, text="other"), format="json")
    assert conflict.status_code == 409  # the text is part of the content
    other = client.post("/v1/episodes", ep(timestamp=4), format="json").json()["id"]
    assert client.get(f"/v1/episodes/{eid}").json()["text"] == "Disk full: ERR_4700 — Straße"
    assert client.get(f"/v1/episodes/{other}").json()["text"] is None
    listed = client.get("/v1/episodes").json()["episodes"]
    assert [(e["id"], e["text"]) for e in listed] == [(eid, body["text"]), (other, None)]
    [hit] = query(client, query_embedding=vec(1.0), top_k=1)
    assert hit["text"] == body["text"]
    patch = client.patch(f"/v1/episodes/{eid}", {"text": "new"}, format="json")
    assert patch.status_code == 400 and "text" in patch.json()["error"]
    patched = client.patch(f"/v1/episodes/{eid}", {"reward": 3.0}, format="json").json()
    assert patched["text"] == body["text"] and patched["reward"] == 3.0
    [hit] = query(client, mode="keyword", query_text="straße")  # still indexed after the PATCH
    assert hit["id"] == eid


@pytest.mark.parametrize("text, ok", [("é" * 8192, True), ("é" * 8192 + "x", False), ("x" * 16385, False),
                                      ("", False), (5, False), (None, True)])
def test_text_is_at_most_16_kib_of_utf8(api, tenant, text, ok):
    t, key = tenant
    r = api.as_key(key).post("/v1/episodes", ep(text=text), format="json")
    assert r.status_code == (201 if ok else 400), r.content
    if not ok:
        assert r.json()["error"].startswith("text") and not Episode.objects.filter(tenant=t).exists()


def test_snapshots_and_checkpoints_keep_text(api, tenant):
    t, key = tenant
    client = api.as_key(key)
    client.post("/v1/episodes/batch", {"episodes": [ep(text="alpha beta"), ep(text=None), ep(text="beta")]},
                format="json")
    before = {e["id"]: e["text"] for e in client.get("/v1/episodes").json()["episodes"]}
    assert client.post("/v1/save", {"path": "s1"}, format="json").status_code == 200
    client.post("/v1/episodes", ep(text="gamma"), format="json")
    assert client.post("/v1/load", {"path": "s1"}, format="json").status_code == 200
    assert {e["id"]: e["text"] for e in client.get("/v1/episodes").json()["episodes"]} == before
    assert [h["text"] for h in query(client, mode="keyword", query_text="alpha")] == ["alpha beta"]
    assert client.post("/v1/checkpoint", {}, format="json").status_code == 200
    cache.clear()  # the next query starts from the checkpoint
    state = TenantState.objects.get(tenant=t)
    index = checkpoint.read_checkpoint(checkpoint.current_manifest(t.slug))
    assert len(index) == 3 and index.keyword.terms.keys() == {"alpha", "beta"}
    assert state.episode_count == 3
    hits = query(client, mode="keyword", query_text="beta", top_k=5)
    assert sorted(h["text"] for h in hits) == ["alpha beta", "beta"]


def random_episode(rng, i: int) -> dict:
    words = rng.choice(WORDS, size=int(rng.integers(0, 8)))
    return ep(text=" ".join(words) if words.size else rng.choice([None, "...", "!"]),
              state_embedding=rng.normal(size=DIM).tolist(), timestamp=int(rng.integers(0, 5)),
              reward=float(rng.integers(0, 3)), tags=[str(t) for t in rng.choice(["a", "b"], size=int(rng.integers(0, 2)))],
              source=str(rng.choice(["s1", "s2"])), task_id=f"task_{i % 3}")


def oracle_ranking(tenant, query_text: str, flt: dict) -> list[tuple[str, float]]:
    """BM25 over every stored text, then the filters, then the tie-break, from the database."""
    rows = {str(r.id): r for r in Episode.objects.filter(tenant=tenant)}
    scores = bm25_oracle({eid: r.text for eid, r in rows.items()}, query_text)

    def passes(r) -> bool:
        return ((flt.get("min_reward") is None or r.reward >= flt["min_reward"])
                and (not flt.get("tags_any") or bool(set(r.tags) & set(flt["tags_any"])))
                and (flt.get("source") is None or r.source == flt["source"])
                and (flt.get("time_after") is None or r.timestamp >= flt["time_after"]))

    kept = [e for e in scores if passes(rows[e])]
    kept.sort(key=lambda e: (-scores[e], -rows[e].timestamp, -rows[e].seq))
    return [(e, scores[e]) for e in kept]


def test_keyword_scores_equal_the_oracle_with_random_filters_and_churn(api, tenant):
    t, key = tenant
    client = api.as_key(key)
    rng = np.random.default_rng(11)
    for rnd in range(4):
        ids = client.post("/v1/episodes/batch", {"episodes": [random_episode(rng, i) for i in range(40)]},
                          format="json").json()["ids"]
        client.post("/v1/episodes/delete", {"ids": ids[:: 7 + rnd]}, format="json")
        for _ in range(8):
            flt = {name: value for name, value in (
                ("min_reward", 1.0), ("tags_any", ["a"]), ("source", "s1"), ("time_after", 2)) if rng.random() < 0.4}
            text = " ".join(rng.choice(WORDS + ["absent"], size=int(rng.integers(1, 4))))
            k = int(rng.integers(1, 60))
            hits = query(client, mode="keyword", query_text=text, top_k=k, **flt)
            expected = oracle_ranking(t, text, flt)[:k]
            assert [h["id"] for h in hits] == [e for e, _ in expected]
            np.testing.assert_allclose([h["score"] for h in hits], [s for _, s in expected], rtol=0, atol=1e-6)
            assert all("vector_rank" not in h for h in hits)


def error_code_episodes(client, rng) -> dict[int, str]:
    """Ten texts that differ only by an error code, with embeddings a text embedder would give
    them: nearly the same."""
    base = rng.normal(size=DIM)
    bodies = [ep(text=f"The job failed with ERR_{4700 + i} while writing to the server",
                 state_embedding=(base + rng.normal(size=DIM) * 0.01).tolist()) for i in range(10)]
    ids = client.post("/v1/episodes/batch", {"episodes": bodies}, format="json").json()["ids"]
    return {4700 + i: eid for i, eid in enumerate(ids)}, base


def test_the_queried_error_code_ranks_first_by_keyword_and_in_the_hybrid_top_5(api, tenant):
    _, key = tenant
    client = api.as_key(key)
    rng = np.random.default_rng(4)
    codes, base = error_code_episodes(client, rng)
    for code in range(4700, 4710):
        hits = query(client, mode="keyword", query_text=f"server says ERR_{code}", top_k=10)
        assert len(hits) == 10 and hits[0]["id"] == codes[code] and hits[0]["score"] > hits[1]["score"]
        # The query's embedding is as close to every text as theirs are to each other: no help from it.
        hybrid = query(client, mode="hybrid", query_text=f"what does err_{code} mean?", top_k=5,
                       query_embedding=(base + rng.normal(size=DIM) * 0.01).tolist())
        assert codes[code] in [h["id"] for h in hybrid] and len(hybrid) == 5
        top = next(h for h in hybrid if h["id"] == codes[code])
        assert top["keyword_rank"] == 1 and 1 <= top["vector_rank"] <= 10
        assert all(h["keyword_rank"] is None for h in hybrid if h is not top)


def test_keyword_finds_a_rare_token_that_vector_misses(api, tenant):
    _, key = tenant
    client = api.as_key(key)
    client.post("/v1/episodes/batch", {"episodes": [
        ep(text="deploy went fine", state_embedding=vec(1.0, 0.0)),
        ep(text="deploy went fine again", state_embedding=vec(0.9, 0.1)),
        ep(text="deploy failed: XK-77Q quota", state_embedding=vec(0.0, 1.0)),
    ]}, format="json")
    by_vector = query(client, query_embedding=vec(1.0, 0.05), top_k=2)
    assert "xk" not in " ".join(h["text"] for h in by_vector).lower()  # vector misses the rare token
    [hit] = query(client, mode="keyword", query_text="xk 77q", top_k=2)  # only one episode holds them
    assert hit["text"] == "deploy failed: XK-77Q quota"
    hybrid = query(client, mode="hybrid", query_text="xk-77q", query_embedding=vec(1.0, 0.05), top_k=2)
    assert hybrid[0]["text"] == "deploy failed: XK-77Q quota"  # keyword rank 1 + vector rank 3 beats vector rank 1
    assert (hybrid[0]["vector_rank"], hybrid[0]["keyword_rank"]) == (3, 1)
    assert (hybrid[1]["vector_rank"], hybrid[1]["keyword_rank"]) == (1, None)
    assert hybrid[0]["score"] == pytest.approx(1 / 63 + 1 / 61) and hybrid[1]["score"] == pytest.approx(1 / 61)
    weighted = query(client, mode="hybrid", query_text="xk-77q", query_embedding=vec(1.0, 0.05), top_k=3,
                     vector_weight=3.0, keyword_weight=0.5, rrf_k=1)
    # 3/(1+2) == 3/(1+3) + 0.5/(1+1): a tie, which the later stored wins
    assert [h["vector_rank"] for h in weighted] == [1, 3, 2] and weighted[1]["score"] == weighted[2]["score"] == 1.0
    weighted = query(client, mode="hybrid", query_text="xk-77q", query_embedding=vec(1.0, 0.05), top_k=3,
                     vector_weight=3.0, keyword_weight=0.4, rrf_k=1)
    assert [h["vector_rank"] for h in weighted] == [1, 2, 3] and weighted[2]["score"] == pytest.approx(3 / 4 + 0.2)


def test_hybrid_returns_min_top_k_matching_and_filters_apply_to_every_mode(api, tenant):
    _, key = tenant
    client = api.as_key(key)
    client.post("/v1/episodes/batch", {"episodes": [
        ep(text="alpha", source="s1", state_embedding=vec(1.0)),
        ep(text=None, source="s1", state_embedding=vec(0.5, 0.5)),
        ep(text="beta", source="s1", state_embedding=vec(0.0, 1.0)),
        ep(text="alpha", source="s2", state_embedding=vec(1.0, 0.1)),
    ]}, format="json")
    hybrid = query(client, mode="hybrid", query_text="alpha", query_embedding=vec(0.0, 1.0), top_k=10, source="s1")
    assert len(hybrid) == 3  # every filtered episode has a vector rank
    assert {h["text"] for h in hybrid} == {"alpha", None, "beta"}
    assert [h["text"] for h in query(client, mode="keyword", query_text="alpha", top_k=10, source="s2")] == ["alpha"]
    assert query(client, mode="keyword", query_text="alpha", top_k=10, source="nope") == []
    assert len(query(client, mode="keyword", query_text="alpha beta", top_k=10)) == 3  # matching: holds a term


@pytest.mark.parametrize("body, field", [
    ({"mode": "keyword"}, "query_text"),
    ({"mode": "keyword", "query_text": "x", "query_embedding": vec(1.0)}, "query_embedding"),
    ({"mode": "hybrid", "query_text": "x"}, "query_embedding"),
    ({"mode": "hybrid", "query_embedding": vec(1.0)}, "query_text"),
    ({"query_embedding": vec(1.0), "query_text": "x"}, "query_text"),
    ({}, "query_embedding"),
    ({"mode": "fuzzy", "query_text": "x"}, "mode"),
    ({"mode": 1, "query_text": "x"}, "mode"),
    ({"mode": "keyword", "query_text": ""}, "query_text"),
    ({"mode": "keyword", "query_text": "x" * 16385}, "query_text"),
    ({"query_embedding": vec(1.0), "rrf_k": 10}, "rrf_k"),
    ({"mode": "keyword", "query_text": "x", "vector_weight": 1.0}, "vector_weight"),
    ({"mode": "hybrid", "query_text": "x", "query_embedding": vec(1.0), "rrf_k": 0}, "rrf_k"),
    ({"mode": "hybrid", "query_text": "x", "query_embedding": vec(1.0), "vector_weight": 0}, "vector_weight"),
    ({"mode": "hybrid", "query_text": "x", "query_embedding": vec(1.0), "keyword_weight": -1}, "keyword_weight"),
    ({"mode": "hybrid", "query_text": "x", "query_embedding": vec(1.0), "keyword_weight": "1"}, "keyword_weight"),
])
def test_query_mode_errors_name_the_field(api, tenant, body, field):
    _, key = tenant
    assert error(api.as_key(key), body).startswith(field)


def test_tag_filters_apply_to_keyword_queries(api, tenant):
    _, key = tenant
    client = api.as_key(key)
    client.post("/v1/episodes", ep(text="x y", tags=["a"]), format="json")
    assert len(query(client, mode="keyword", query_text="x", tags_all=["a"])) == 1
    assert query(client, mode="keyword", query_text="x", tags_all=["b"]) == []
