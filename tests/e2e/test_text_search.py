"""Keyword search on every worker of a real gunicorn, right after each write (docs/api.md §4, §7):
BM25 scores equal a brute-force oracle over the stored texts, with random filters, through stores,
PATCHes and deletes. SQLite by default; DATABASE_URL runs it on PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.bm25 import bm25_oracle
from tests.support.tenants import episode, fresh_client, unique_slug

pytestmark = pytest.mark.e2e
DIM = 8
WORDS = ["disk", "full", "Retry", "timeout", "ERR_4700", "err_4701", "the", "the", "of", "Straße", "x"]
READS_PER_WRITE = 6  # fresh connections: with 3 workers, each very likely answers at least one


def random_text(rng) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(1, 8))))


def stored(client) -> dict[str, dict]:
    """Every stored episode, as the API lists it (the oracle's corpus)."""
    out, cursor = {}, None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/episodes", params=params).json()
        out.update({e["id"]: e for e in page["episodes"]})
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def expected(episodes: dict[str, dict], text: str, flt: dict, k: int) -> list[tuple[str, float]]:
    scores = bm25_oracle({eid: e["text"] for eid, e in episodes.items()}, text)
    keep = [eid for eid in scores if (flt.get("source") is None or episodes[eid]["source"] == flt["source"])
            and (not flt.get("tags_any") or set(flt["tags_any"]) & set(episodes[eid]["tags"]))]
    # Ties: newer timestamp, then later stored (the list is newest first: its order is the store order here).
    order = {eid: i for i, eid in enumerate(episodes)}
    keep.sort(key=lambda e: (-scores[e], -episodes[e]["timestamp"], order[e]))
    return [(e, scores[e]) for e in keep[:k]]


def check_every_worker(client, rng, episodes) -> None:
    for _ in range(READS_PER_WRITE):
        flt = {name: value for name, value in (("source", "s1"), ("tags_any", ["a"])) if rng.random() < 0.4}
        text = " ".join(rng.choice(WORDS + ["absent"], size=int(rng.integers(1, 4))))
        k = int(rng.integers(1, 40))
        r = client.post("/v1/query", json={"mode": "keyword", "query_text": text, "top_k": k, **flt})
        assert r.status_code == 200, r.text
        hits = r.json()["episodes"]
        want = expected(episodes, text, flt, k)
        assert [h["id"] for h in hits] == [e for e, _ in want]
        np.testing.assert_allclose([h["score"] for h in hits], [s for _, s in want], rtol=0, atol=1e-6)


def test_keyword_scores_equal_the_oracle_on_every_worker_right_after_each_write(memcloud_server):
    key = memcloud_server.create_tenant(unique_slug(), "--dim", str(DIM))
    rng = np.random.default_rng(21)
    with fresh_client(memcloud_server.url, key) as client:
        for i in range(12):
            batch = [episode(DIM, rng, text=random_text(rng), timestamp=int(rng.integers(0, 4)),
                             source=str(rng.choice(["s1", "s2"])), tags=["a"] if rng.random() < 0.5 else [])
                     for _ in range(int(rng.integers(1, 6)))]
            assert client.post("/v1/episodes/batch", json={"episodes": batch}).status_code == 201
            episodes = stored(client)
            check_every_worker(client, rng, episodes)
            if i % 3 == 2:  # a removal changes N, df and avgdl for every later query
                doomed = list(episodes)[int(rng.integers(len(episodes)))]
                assert client.delete(f"/v1/episodes/{doomed}").status_code == 200
                check_every_worker(client, rng, stored(client))
            if i % 4 == 3:  # a PATCH re-reads the row on every worker; the text stays
                target = list(episodes)[0]
                assert client.patch(f"/v1/episodes/{target}", json={"source": "s1"}).status_code == 200
                check_every_worker(client, rng, stored(client))
        hybrid = client.post("/v1/query", json={"mode": "hybrid", "query_text": "err_4700",
                                                "query_embedding": rng.normal(size=DIM).tolist(), "top_k": 5})
        assert hybrid.status_code == 200 and len(hybrid.json()["episodes"]) == 5
