"""A query that starts from a key this worker verified lately checks the key in its winners'
statement (tenants/key_memo.py): one round trip, and every refusal exactly as the full check gives it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from episodes.models import TenantState
from ops.models import UsageMinute
from tenants import selectors as tenant_selectors
from tenants.models import ApiKey, Tenant
from tenants.services import key_revoke
from tests.episodes.bodies import ep, vec

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("the key is checked in the winners' statement on PostgreSQL only")


@pytest.fixture
def lookups(monkeypatch):
    """How many times the full authentication looked the key up (its one round trip)."""
    calls = []
    real = tenant_selectors.key_with_tenant

    def counted(**kwargs):
        calls.append(kwargs["prefix"])
        return real(**kwargs)

    monkeypatch.setattr("tenants.authentication.key_with_tenant", counted)
    return calls


def query(client, **body):
    return client.post("/v1/query", {"query_embedding": vec(1.0), "top_k": 5, **body}, format="json")


def store(tenant: Tenant, *bodies: dict) -> None:
    """Stored through the service, as any worker's write is: this worker's index is not told."""
    from episodes.serializers import EpisodeInput
    from episodes.services import episodes_store

    checked = []
    for body in bodies:
        data = EpisodeInput(data=body, context={"tenant": tenant})
        data.is_valid(raise_exception=True)
        checked.append(data.validated_data)
    episodes_store(tenant=tenant, episodes=checked)


@pytest.fixture
def warm(api, make_tenant, lookups):
    """A tenant with episodes whose key this worker has verified and whose index it holds."""
    tenant, key = make_tenant("memo", scope="read")
    store(tenant, *(ep(task_id=f"t{i}", state_embedding=vec(1.0, i / 10)) for i in range(3)))
    client = api.as_key(key)
    first = query(client)
    assert first.status_code == 200 and len(first.json()["episodes"]) == 3
    assert len(lookups) == 1
    lookups.clear()
    return tenant, key, client


def test_a_remembered_key_answers_without_its_own_lookup_and_the_same(warm, lookups):
    tenant, key, client = warm
    again = query(client)
    assert again.status_code == 200
    assert [e["task_id"] for e in again.json()["episodes"]] == ["t0", "t1", "t2"]
    assert lookups == []  # the key was checked in the winners' statement


def test_a_remembered_key_answers_a_query_that_matches_nothing_or_whose_winners_are_gone(warm, lookups):
    tenant, _, client = warm
    nothing = query(client, tags_any=["no-such-tag"])
    assert nothing.status_code == 200 and nothing.json() == {"episodes": []}
    from episodes.models import Episode

    Episode.objects.filter(tenant=tenant).delete()  # behind every index's back: no counter moves
    gone = query(client)
    assert gone.status_code == 200 and gone.json() == {"episodes": []}
    assert lookups == []


def test_a_revoked_key_is_refused_on_its_next_query(warm, lookups):
    _, key, client = warm
    key_revoke(prefix=key[3:11])
    refused = query(client)
    assert refused.status_code == 401 and refused.json() == {"error": "API key has been revoked"}
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert query(client).status_code == 401


def test_an_expired_key_is_refused_on_its_next_query(warm):
    _, key, client = warm
    ApiKey.objects.filter(prefix=key[3:11]).update(expires_at=timezone.now() - timedelta(hours=1))
    refused = query(client)
    assert refused.status_code == 401 and refused.json() == {"error": "API key has expired"}


def test_a_deactivated_tenant_is_refused_on_its_next_query(warm):
    tenant, _, client = warm
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)
    refused = query(client)
    assert refused.status_code == 403 and "inactive" in refused.json()["error"]


def test_a_rate_limit_set_later_counts_the_next_query(warm):
    tenant, _, client = warm
    Tenant.objects.filter(pk=tenant.pk).update(rate_limit=10)
    limited = query(client)
    assert limited.status_code == 200 and limited["X-RateLimit-Remaining"] == "9"


def test_a_bad_body_of_a_revoked_key_is_a_401_and_of_a_good_key_a_400(warm):
    _, key, client = warm
    bad = query(client, top_k=0)
    assert bad.status_code == 400 and "top_k" in bad.json()["error"]
    key_revoke(prefix=key[3:11])
    assert query(client, top_k=0).status_code == 401


def test_a_write_of_another_worker_is_seen_and_the_query_counted_once(warm):
    tenant, _, client = warm
    from episodes.cache import cache

    before = cache.peek(tenant.pk).version
    store(tenant, ep(task_id="new", state_embedding=vec(1.0)))
    assert TenantState.objects.get(pk=tenant.pk).version > before == cache.peek(tenant.pk).version
    counted = sum(UsageMinute.objects.filter(tenant=tenant).values_list("queries", flat=True))
    seen = query(client)
    assert seen.status_code == 200
    assert "new" in [e["task_id"] for e in seen.json()["episodes"]]
    assert cache.peek(tenant.pk).version == TenantState.objects.get(pk=tenant.pk).version
    assert sum(UsageMinute.objects.filter(tenant=tenant).values_list("queries", flat=True)) == counted + 1


def test_a_winner_deleted_by_another_worker_is_replaced_by_the_next_best(warm):
    tenant, _, client = warm
    from episodes.services import episode_delete

    gone = query(client, top_k=2).json()["episodes"][0]["id"]
    episode_delete(tenant=tenant, episode_id=uuid.UUID(gone))
    left = query(client, top_k=2).json()["episodes"]
    assert [e["task_id"] for e in left] == ["t1", "t2"]  # still k: the next best takes its place


def test_a_key_moved_to_another_tenant_answers_for_that_tenant(warm, make_tenant):
    # The check names the tenant the key was verified for: a key row moved to another tenant fails it.
    tenant, key, client = warm
    other, _ = make_tenant("memo-other")
    ApiKey.objects.filter(prefix=key[3:11]).update(tenant=other)
    moved = query(client)
    assert moved.status_code == 200
    assert moved.json() == {"episodes": []}  # answered for the tenant the key now belongs to


def test_another_secret_under_a_remembered_prefix_is_refused(warm, api, lookups):
    _, key, _ = warm
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    refused = query(api.as_key(forged))
    assert refused.status_code == 401 and refused.json() == {"error": "invalid API key"}
    assert lookups == [key[3:11]]  # refused by the full check, not answered from the memo
    assert query(api.as_key(key)).status_code == 200


def test_after_other_workers_writes_the_answer_is_the_full_search_of_a_fresh_index(api, make_tenant, monkeypatch):
    # Random stores, patches and deletes behind the worker's back (the API's writes do not touch its
    # index), each followed by a query from the remembered key: the index is caught up, and only the
    # winners found and the episodes changed since are searched again unless a winner changed. The
    # answer must be a fresh index's full search, ids, order and scores.
    import numpy as np

    from episodes import selectors
    from episodes.cache import build_index
    from memindex.columns import Filters

    rng = np.random.default_rng(7)
    tenant, key = make_tenant("memo-random", scope="admin")
    client = api.as_key(key)
    tags = ["a", "b", "c", "d"]

    def body() -> dict:
        return ep(task_id=f"t{rng.integers(1000)}", state_embedding=rng.normal(size=8).round(2).tolist(),
                  reward=float(rng.integers(-3, 4)), tags=list(rng.choice(tags, size=rng.integers(0, 3), replace=False)))

    ids = client.post("/v1/episodes/batch", {"episodes": [body() for _ in range(150)]}, format="json").json()["ids"]
    delta = []
    real = selectors._search_changed
    monkeypatch.setattr(selectors, "_search_changed", lambda *a: delta.append(r := real(*a)) or r)
    filters = [{}, {"tags_any": ["a"]}, {"tags_all": ["b", "c"]}, {"min_reward": 0.0}]
    for step in range(60):
        q = rng.normal(size=8).round(2).tolist()
        flt, k = filters[step % len(filters)], int(rng.integers(1, 8))
        answer = query(client, query_embedding=q, top_k=k, **flt)
        assert answer.status_code == 200
        winners = [e["id"] for e in answer.json()["episodes"]]
        fresh = build_index(tenant, TenantState.objects.get(pk=tenant.pk)).index
        expected_ids, expected_scores = fresh.search(np.asarray(q, dtype=np.float32), k, Filters(**flt), 0)
        assert winners == expected_ids, step
        assert [e["score"] for e in answer.json()["episodes"]] == pytest.approx(expected_scores.tolist(), rel=1e-6)
        # Then another worker's write, often to one of the winners.
        op = rng.integers(3)
        target = winners[0] if winners and rng.random() < 0.5 else ids[int(rng.integers(len(ids)))]
        if op == 0:
            ids += client.post("/v1/episodes/batch", {"episodes": [body() for _ in range(int(rng.integers(1, 4)))]},
                               format="json").json()["ids"]
        elif op == 1:
            client.patch(f"/v1/episodes/{target}", {"tags": list(rng.choice(tags, size=2, replace=False)),
                                                    "reward": float(rng.integers(-3, 4))}, format="json")
        else:
            client.delete(f"/v1/episodes/{target}")
    assert any(r is not None for r in delta) and any(r is None for r in delta)  # both ways were taken
