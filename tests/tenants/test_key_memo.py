"""A query that starts from a key this worker verified lately checks the key in its winners'
statement (tenants/key_memo.py): one round trip, and every refusal exactly as the full check gives it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import numpy as np
import pytest
from django.db import connection
from django.utils import timezone

from core.models import UsageMinute
from episodes.cache import build_index, cache
from episodes.serializers import EpisodeInput
from episodes.services import episode_delete, episodes_store
from memindex.columns import Filters
from tenants import key_memo
from tenants.models import ApiKey, Tenant, TenantState
from tenants.services import key_issue, key_revoke
from tests.episodes.bodies import ep, vec

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("the key is checked in the winners' statement on PostgreSQL only")


@pytest.fixture
def statements():
    """Every statement this process runs meanwhile (core/db.py's go through the same wrappers)."""
    seen: list[str] = []

    def capture(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        yield seen


def lookups(statements: list[str]) -> list[str]:
    """The full authentication's key lookups (its own round trip) among `statements`."""
    return [s for s in statements if s.startswith("SELECT") and '"tenants_apikey"."prefix" = %s' in s]


def query(client, **body):
    return client.post("/v1/query", {"query_embedding": vec(1.0), "top_k": 5, **body}, format="json")


def store(tenant: Tenant, *bodies: dict) -> None:
    """Stored through the service, as any worker's write is: this worker's index is not told."""
    checked = []
    for body in bodies:
        data = EpisodeInput(data=body, context={"tenant": tenant})
        data.is_valid(raise_exception=True)
        checked.append(data.validated_data)
    episodes_store(tenant=tenant, episodes=checked)


@pytest.fixture
def warm(api, make_tenant, statements):
    """A tenant with episodes whose key this worker has verified and whose index it holds."""
    tenant, key = make_tenant("memo", scope="read")
    store(tenant, *(ep(task_id=f"t{i}", state_embedding=vec(1.0, i / 10)) for i in range(3)))
    client = api.as_key(key)
    first = query(client)
    assert first.status_code == 200 and len(first.json()["episodes"]) == 3
    assert len(lookups(statements)) == 1
    statements.clear()
    return tenant, key, client


def test_a_remembered_key_answers_without_its_own_lookup_and_the_same(warm, statements):
    tenant, key, client = warm
    again = query(client)
    assert again.status_code == 200
    assert [e["task_id"] for e in again.json()["episodes"]] == ["t0", "t1", "t2"]
    assert lookups(statements) == []  # the key was checked in the winners' statement
    # One round trip (the savepoints are the test's transaction around it).
    ran = [s for s in statements if "SAVEPOINT" not in s]
    assert len(ran) == 1 and ran[0].startswith("WITH k AS")


def test_the_query_is_counted_once_by_the_checking_statement(warm):
    tenant, _, client = warm
    counted = sum(UsageMinute.objects.filter(tenant=tenant).values_list("queries", flat=True))
    assert query(client).status_code == 200
    assert query(client, tags_any=["no-such-tag"]).status_code == 200
    assert sum(UsageMinute.objects.filter(tenant=tenant).values_list("queries", flat=True)) == counted + 2


def test_a_remembered_key_answers_a_query_that_matches_nothing_or_whose_winners_are_gone(warm, statements):
    tenant, _, client = warm
    nothing = query(client, tags_any=["no-such-tag"])
    assert nothing.status_code == 200 and nothing.json() == {"episodes": []}
    from episodes.models import Episode

    Episode.objects.filter(tenant=tenant).delete()  # behind every index's back: no counter moves
    gone = query(client)
    assert gone.status_code == 200 and gone.json() == {"episodes": []}
    assert lookups(statements) == []


def test_a_revoked_key_is_refused_on_its_next_query(warm):
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


def test_no_key_is_remembered_under_a_deployment_rate_limit(api, make_tenant, settings, statements):
    settings.AGENT_MEM_RATE_LIMIT = 100
    _, key = make_tenant("memo-limited")
    client = api.as_key(key)
    assert query(client).status_code == 200 and query(client).status_code == 200
    assert len(lookups(statements)) == 2


def test_a_bad_body_of_a_revoked_key_is_a_401_and_of_a_good_key_a_400(warm):
    _, key, client = warm
    bad = query(client, top_k=0)
    assert bad.status_code == 400 and "top_k" in bad.json()["error"]
    key_revoke(prefix=key[3:11])
    assert query(client, top_k=0).status_code == 401


def test_a_changed_scope_is_read_again_before_the_answer(warm, statements):
    _, key, client = warm
    ApiKey.objects.filter(prefix=key[3:11]).update(scope="write")
    statements.clear()
    assert query(client).status_code == 200
    assert len(lookups(statements)) == 1  # the check failed, the full authentication answered


def test_a_write_of_another_worker_is_seen_and_the_query_counted_once(warm):
    tenant, _, client = warm
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


def test_another_secret_under_a_remembered_prefix_is_refused(warm, api, statements):
    _, key, _ = warm
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    refused = query(api.as_key(forged))
    assert refused.status_code == 401 and refused.json() == {"error": "invalid API key"}
    assert len(lookups(statements)) == 1  # refused by the full check, not answered from the memo
    assert query(api.as_key(key)).status_code == 200


def test_a_remembered_user_bound_key_sees_only_its_users_episodes(api, make_tenant, statements):
    tenant, _ = make_tenant("memo-users")
    store(tenant, ep(task_id="alice-1", user_id="alice", state_embedding=vec(1.0)),
          ep(task_id="bob-1", user_id="bob", state_embedding=vec(1.0, 0.1)))
    _, raw = key_issue(tenant=tenant, scope="read", user_id="alice")
    client = api.as_key(raw)
    for _ in range(2):
        answer = query(client)
        assert answer.status_code == 200
        assert [e["task_id"] for e in answer.json()["episodes"]] == ["alice-1"]
    assert len(lookups(statements)) == 1  # the second query started from the memo
    minutes = UsageMinute.objects.filter(tenant=tenant, user_id="alice")
    assert sum(minutes.values_list("queries", flat=True)) == 2


def test_keyword_and_hybrid_queries_start_from_the_memo_too(api, make_tenant, statements):
    tenant, key = make_tenant("memo-text")
    store(tenant, ep(task_id="fix", text="fix the flaky login test", state_embedding=vec(1.0)),
          ep(task_id="other", text="write the release notes", state_embedding=vec(0.0, 1.0)))
    client = api.as_key(key)
    assert query(client).status_code == 200
    statements.clear()
    keyword = client.post("/v1/query", {"mode": "keyword", "query_text": "flaky login", "top_k": 2}, format="json")
    assert keyword.status_code == 200 and [e["task_id"] for e in keyword.json()["episodes"]] == ["fix"]
    hybrid = query(client, mode="hybrid", query_text="release notes", top_k=2)
    assert hybrid.status_code == 200 and {e["task_id"] for e in hybrid.json()["episodes"]} == {"fix", "other"}
    assert lookups(statements) == []


def test_memo_entries_expire_and_are_bounded(warm, statements, monkeypatch):
    _, key, client = warm
    monkeypatch.setattr(key_memo, "TTL_SECS", 0.0)
    assert query(client).status_code == 200
    assert len(lookups(statements)) == 1  # too old to start from: looked up again
    monkeypatch.setattr(key_memo, "MAX_KEYS", 0)
    key_memo.clear()
    assert query(client).status_code == 200
    assert key_memo.recall(key) is None  # none may be kept


def test_after_other_workers_writes_the_answer_is_the_full_search_of_a_fresh_index(api, make_tenant):
    # Random stores, patches and deletes, each followed by a query from the remembered key, which
    # finds the index behind the counters its check reads: the answer must still be a fresh index's
    # full search, ids, order and scores.
    rng = np.random.default_rng(7)
    tenant, key = make_tenant("memo-random", scope="admin")
    client = api.as_key(key)
    tags = ["a", "b", "c", "d"]

    def body() -> dict:
        return ep(task_id=f"t{rng.integers(1000)}", state_embedding=rng.normal(size=8).round(2).tolist(),
                  reward=float(rng.integers(-3, 4)), tags=list(rng.choice(tags, size=rng.integers(0, 3), replace=False)))

    ids = client.post("/v1/episodes/batch", {"episodes": [body() for _ in range(150)]}, format="json").json()["ids"]
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


def test_a_revoked_key_is_refused_before_the_tenants_embedder_is_called(api, db, settings, statements):
    # The provider listens nowhere, so calling it is a 503; a revoked key's query is the key's 401,
    # as when the key is looked up first.
    from embedders import registry
    from tests.support.server import free_port

    settings.AGENT_MEM_EMBEDDINGS_URL = f"http://127.0.0.1:{free_port()}/v1"
    settings.AGENT_MEM_EMBEDDINGS_RETRIES = 0
    registry.reset(kind="openai")
    from tenants.services import tenant_create

    tenant = tenant_create(slug="memo-embedder", embedder="openai:any-model@8")
    _, key = key_issue(tenant=tenant, scope="read")
    client = api.as_key(key)
    assert query(client).status_code == 200  # a vector query: remembered
    assert key_memo.recall(key) is not None
    key_revoke(prefix=key[3:11])
    refused = client.post("/v1/query", {"query_text": "words"}, format="json")
    assert refused.status_code == 401 and refused.json() == {"error": "API key has been revoked"}
