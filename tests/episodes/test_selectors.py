"""episodes/selectors.py through GET /v1/episodes (docs/api.md §8): newest first with store order
breaking ties, filters that match a query's, pages under writes, expired episodes hidden (DRF test
client, real database)."""

from __future__ import annotations

import pytest

from tests.episodes.bodies import ep, vec
from tests.episodes.helpers import listed, query_ids, store

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_sweep_from_requests")]


@pytest.fixture
def client(api, tenant):
    return api.as_key(tenant[1])


def test_list_is_newest_first_with_store_order_breaking_ties(client):
    ids = store(client, *[ep(timestamp=t) for t in (5, 9, 5, 1, 9, 5)])
    expected = [ids[4], ids[1], ids[5], ids[2], ids[0], ids[3]]  # timestamp desc, then later stored first
    for limit in (1, 2, 4, 6, 100):
        assert listed(client, limit=limit) == expected
    first = client.get("/v1/episodes", {"limit": 6}).json()
    assert first["next_cursor"] is None and [e["id"] for e in first["episodes"]] == expected
    assert "state_embedding" not in first["episodes"][0]
    with_emb = client.get("/v1/episodes", {"limit": 1, "include_embedding": "true"}).json()["episodes"][0]
    assert with_emb["state_embedding"] == vec(1.0) and with_emb["timestamp"] == 9


def test_empty_tenant_lists_nothing(client):
    assert client.get("/v1/episodes").json() == {"episodes": [], "next_cursor": None}


def test_default_limit_is_100(client):
    store(client, *[ep(timestamp=t) for t in range(130)])
    body = client.get("/v1/episodes").json()
    assert len(body["episodes"]) == 100 and body["next_cursor"]
    assert len(listed(client)) == 130


def test_list_filters_match_query_semantics(client):
    ids = store(
        client,
        ep(task_id="task_a", reward=-1.0, tags=["neg"], timestamp=1),
        ep(task_id="task_b", reward=0.5, tags=["mid", "x"], timestamp=2, source="agent-a", user_id="u1"),
        ep(task_id="other", reward=2.0, tags=["high", "x"], timestamp=3),
        ep(task_id="Task_c", reward=3.0, tags=["a,b"], timestamp=4),
    )
    cases = [
        ({}, ids),
        ({"min_reward": "0.5"}, ids[1:]),
        ({"min_reward": "-5"}, ids),
        ({"tags_any": "neg,high"}, [ids[0], ids[2]]),
        ({"tags_any": ""}, ids),  # an empty tag list means no tag filter
        ({"tags_all": "x,mid"}, [ids[1]]),
        ({"tags_all": "x,nope"}, []),
        ({"task_id_prefix": "task_"}, ids[:2]),  # case-sensitive on every database
        ({"source": "agent-a"}, [ids[1]]),
        ({"user_id": "u1"}, [ids[1]]),
        ({"user_id": "u2"}, []),
        ({"time_after": "2", "time_before": "3"}, ids[1:3]),
        ({"tags_any": "x", "min_reward": "1"}, [ids[2]]),
    ]
    for params, want in cases:
        assert sorted(listed(client, limit=1, **params)) == sorted(want), params
        flt = {k: (v.split(",") if v else []) if k.startswith("tags") else
               (float(v) if k == "min_reward" else int(v) if k.startswith("time") else v) for k, v in params.items()}
        assert sorted(query_ids(client, **flt)) == sorted(want), params
    # Repeating a tag parameter adds to the list.
    r = client.get("/v1/episodes?tags_any=neg&tags_any=high")
    assert sorted(e["id"] for e in r.json()["episodes"]) == sorted([ids[0], ids[2]])


def test_pages_neither_repeat_nor_skip_under_writes(client):
    stable = store(client, *[ep(timestamp=t % 7) for t in range(60)])
    churn = store(client, *[ep(timestamp=t % 7) for t in range(30)])
    seen, cursor, step = [], None, 0
    while True:
        body = client.get("/v1/episodes", {"limit": 9, **({"cursor": cursor} if cursor else {})}).json()
        seen += [e["id"] for e in body["episodes"]]
        # Between pages: store new episodes at every timestamp, delete some churn.
        store(client, *[ep(timestamp=t) for t in range(7)])
        victims = churn[step * 3:(step + 1) * 3]
        if victims:
            assert client.post("/v1/episodes/delete", {"ids": victims}, format="json").status_code == 200
        step += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert set(stable) <= set(seen)


def test_list_hides_expired_and_stats_count_live(client):
    live_id, dead_id = store(client, ep(timestamp=1), ep(timestamp=2, expires_at=1))
    assert listed(client) == [live_id]
    assert client.get("/v1/stats").json()["episodes"] == 1
