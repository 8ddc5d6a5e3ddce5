"""The five tools in-process (docs/api.md §11): arguments validated as /v1 validates them, errors
naming the argument with nothing changed, scopes, quota, rate limit, audit, usage, the size cap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.models import UsageMinute
from episodes.models import Episode
from mcpserver.tools import LIST_MAX, MAX_RESULT_BYTES

DIM = 8


def vec(seed: int) -> list[float]:
    return np.random.default_rng(seed).normal(size=DIM).tolist()


def error_of(response) -> dict:
    body = response.json()
    assert "error" in body, body
    return body["error"]


def test_tools_list_describes_every_argument_with_the_tenants_dim(rpc):
    tools = {t["name"]: t for t in rpc.request("tools/list").json()["result"]["tools"]}
    assert set(tools) == {"remember", "recall", "forget", "list_memories", "memory_stats"}
    for tool in tools.values():
        assert tool["description"] and tool["outputSchema"]["type"] == "object"
        for name, prop in tool["inputSchema"]["properties"].items():
            assert prop.get("description") or name == "filter" or prop.get("properties"), (tool["name"], name)
    embedding = tools["remember"]["inputSchema"]["properties"]["embedding"]
    assert embedding["minItems"] == embedding["maxItems"] == DIM
    recall = tools["recall"]["inputSchema"]["properties"]
    assert recall["mode"]["enum"] == ["vector", "keyword", "hybrid"] and recall["top_k"]["maximum"] == 1000
    assert {"min_reward", "tags_any", "tags_all", "task_id_prefix", "source", "user_id", "time_after",
            "time_before"} <= set(recall)
    assert tools["recall"]["annotations"]["readOnlyHint"] is True
    assert tools["forget"]["annotations"]["destructiveHint"] is True


def test_a_read_key_lists_only_the_read_tools(make_tenant, make_rpc):
    _, key = make_tenant("reader", scope="read")
    names = [t["name"] for t in make_rpc(key).request("tools/list").json()["result"]["tools"]]
    assert names == ["recall", "list_memories", "memory_stats"]


def test_remember_stores_what_v1_would_store(rpc, tenant, api):
    result = rpc.result("remember", {"embedding": vec(1), "task_id": "trip-42", "reward": 0.5, "tags": ["a", "a", "b"],
                                     "metadata": {"k": 1}, "source": "chat", "user_id": "u1", "ttl_secs": 3600})
    memory_id = result["structuredContent"]["id"]
    assert memory_id in result["content"][0]["text"]
    stored = api.as_key(tenant[1]).get(f"/v1/episodes/{memory_id}").json()
    assert stored["task_id"] == "trip-42" and stored["tags"] == ["a", "b"] and stored["metadata"] == {"k": 1}
    assert stored["source"] == "chat" and stored["user_id"] == "u1" and stored["expires_at"] is not None
    assert np.allclose(stored["state_embedding"], vec(1), atol=1e-6)


def test_remember_defaults_task_id_and_reward(rpc, tenant):
    rpc.result("remember", {"embedding": vec(2)})
    row = Episode.objects.get(tenant=tenant[0])
    assert row.task_id == "memory" and row.reward == 0.0


@pytest.mark.parametrize("arguments, named", [
    ({"embedding": vec(1)[:3]}, "embedding"),
    ({"embedding": [0.0] * DIM}, "embedding"),
    ({"embedding": vec(1), "reward": "high"}, "reward"),
    ({"embedding": vec(1), "reward": None}, "reward"),
    ({"embedding": vec(1), "tags": ["x" * 129]}, "tags"),
    ({"embedding": vec(1), "metadata": [1]}, "metadata"),
    ({"embedding": vec(1), "ttl_secs": 0}, "ttl_secs"),
    ({"embedding": vec(1), "task_id": ""}, "task_id"),
    ({"embedding": vec(1), "colour": "red"}, "colour"),
    ({"tags": ["a"]}, "embedding"),
])
def test_bad_remember_arguments_name_the_argument_and_store_nothing(rpc, tenant, arguments, named):
    error = error_of(rpc.call("remember", arguments))
    assert error["code"] == -32602 and error["message"].startswith(named), error
    assert not Episode.objects.filter(tenant=tenant[0]).exists()


def test_text_needing_a_vector_on_a_tenant_without_an_embedder_names_the_argument(rpc, tenant):
    for name, arguments, named in (("remember", {"text": "tea, not coffee"}, "text"),
                                   ("recall", {"query": "drinks", "mode": "vector"}, "query"),
                                   ("recall", {"query": "drinks", "mode": "hybrid"}, "query"),
                                   ("recall", {"embedding": vec(1), "mode": "keyword"}, "query")):
        error = error_of(rpc.call(name, arguments))
        assert error["code"] == -32602 and error["message"].startswith(named), (arguments, error)
    assert not Episode.objects.filter(tenant=tenant[0]).exists()


def test_texts_with_vectors_are_found_by_their_words_on_a_tenant_without_an_embedder(rpc, tenant):
    tea = rpc.result("remember", {"text": "the user drinks tea, never coffee", "embedding": vec(1)})
    rpc.result("remember", {"text": "deploys go out on fridays", "embedding": vec(2)})
    memory_id = tea["structuredContent"]["id"]
    assert Episode.objects.get(tenant=tenant[0], id=memory_id).text == "the user drinks tea, never coffee"
    found = rpc.result("recall", {"query": "coffee"})["structuredContent"]["memories"]  # keyword by default here
    assert [m["id"] for m in found] == [memory_id] and found[0]["text"].startswith("the user drinks tea")
    both = rpc.result("recall", {"query": "fridays", "embedding": vec(1), "mode": "hybrid", "top_k": 2})
    assert len(both["structuredContent"]["memories"]) == 2


def test_recall_applies_every_filter_and_answers_compact_memories(rpc):
    ids = {}
    for i, (task, reward, tags, source) in enumerate([("a/1", 1.0, ["x"], "s1"), ("a/2", -1.0, ["x", "y"], "s2"),
                                                      ("b/1", 2.0, ["y"], "s1")]):
        ids[task] = rpc.result("remember", {"embedding": vec(i), "task_id": task, "reward": reward, "tags": tags,
                                            "source": source})["structuredContent"]["id"]

    def found(**filters) -> list[str]:
        result = rpc.result("recall", {"embedding": vec(0), "top_k": 10, **filters})
        return sorted(m["task_id"] for m in result["structuredContent"]["memories"])

    assert found() == ["a/1", "a/2", "b/1"]
    assert found(min_reward=0.5) == ["a/1", "b/1"]
    assert found(tags_all=["x", "y"]) == ["a/2"]
    assert found(tags_any=["y"]) == ["a/2", "b/1"]
    assert found(task_id_prefix="a/") == ["a/1", "a/2"]
    assert found(source="s1", min_reward=1.5) == ["b/1"]
    assert found(time_after=2**62) == []
    best = rpc.result("recall", {"embedding": vec(0), "top_k": 1})["structuredContent"]["memories"][0]
    assert set(best) == {"id", "score", "text", "task_id", "reward", "tags", "timestamp"}
    assert best["id"] == ids["a/1"]


@pytest.mark.parametrize("arguments, named", [
    ({"embedding": vec(1), "top_k": 1001}, "top_k"),
    ({"embedding": vec(1), "top_k": 0}, "top_k"),
    ({"embedding": vec(1), "mode": "fuzzy"}, "mode"),
    ({"embedding": vec(1), "tags_any": "x"}, "tags_any"),
    ({"embedding": vec(1), "min_reward": "lots"}, "min_reward"),
    ({"embedding": vec(1)[:2]}, "embedding"),
    ({"embedding": vec(1), "query_embedding": vec(1)}, "query_embedding"),
    ({"top_k": 3}, "embedding"),
])
def test_bad_recall_arguments_name_the_argument(rpc, arguments, named):
    error = error_of(rpc.call("recall", arguments))
    assert error["code"] == -32602 and error["message"].startswith(named), error


def test_forget_by_ids_and_by_filter(rpc, tenant):
    kept = rpc.result("remember", {"embedding": vec(1), "tags": ["keep"]})["structuredContent"]["id"]
    gone = rpc.result("remember", {"embedding": vec(2), "tags": ["drop"]})["structuredContent"]["id"]
    rpc.result("remember", {"embedding": vec(3), "tags": ["drop"]})
    assert rpc.result("forget", {"ids": [gone]})["structuredContent"] == {"removed": 1}
    assert rpc.result("forget", {"filter": {"tags_any": ["drop"]}})["structuredContent"] == {"removed": 1}
    assert [str(i) for i in Episode.objects.filter(tenant=tenant[0]).values_list("id", flat=True)] == [kept]


@pytest.mark.parametrize("arguments, named", [
    ({}, "give either ids or filter"),
    ({"ids": ["not-a-uuid"]}, "ids"),
    ({"filter": {}}, "filter"),
    ({"filter": {"min_reward": "x"}}, "filter.min_reward"),
    ({"ids": [], "filter": {"source": "s"}}, "give either ids or filter"),
])
def test_bad_forget_arguments_remove_nothing(rpc, tenant, arguments, named):
    rpc.result("remember", {"embedding": vec(1)})
    error = error_of(rpc.call("forget", arguments))
    assert error["code"] == -32602 and error["message"].startswith(named), error
    assert Episode.objects.filter(tenant=tenant[0]).count() == 1


def test_write_tools_need_the_write_scope(make_tenant, make_rpc, tenant):
    _, read_key = make_tenant("reader2", scope="read")
    r = make_rpc(read_key).call("forget", {"filter": {"source": "x"}})
    assert r.status_code == 403 and error_of(r)["code"] == -32011 and "'write'" in error_of(r)["message"]


def test_list_memories_pages_newest_first_with_the_cursor(rpc):
    ids = [rpc.result("remember", {"embedding": vec(i), "tags": ["p"]})["structuredContent"]["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        arguments = {"limit": 2, "tags_all": ["p"], **({"cursor": cursor} if cursor else {})}
        page = rpc.result("list_memories", arguments)["structuredContent"]
        seen += [m["id"] for m in page["memories"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert error_of(rpc.call("list_memories", {"limit": LIST_MAX + 1}))["message"].startswith("limit")
    assert error_of(rpc.call("list_memories", {"cursor": "bogus"}))["message"].startswith("cursor")


def test_a_list_page_too_large_for_the_cap_is_shortened_and_the_cursor_skips_nothing(rpc):
    tags = [f"{i:03d}-" + "x" * 120 for i in range(64)]
    ids = [rpc.result("remember", {"embedding": vec(i), "tags": tags})["structuredContent"]["id"] for i in range(12)]
    seen, cursor = [], None
    while True:
        r = rpc.call("list_memories", {"limit": 100, **({"cursor": cursor} if cursor else {})})
        assert len(r.content) <= MAX_RESULT_BYTES
        page = r.json()["result"]["structuredContent"]
        seen += [m["id"] for m in page["memories"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]


def test_memory_stats(rpc, tenant):
    rpc.result("remember", {"embedding": vec(1)})
    stats = rpc.result("memory_stats")["structuredContent"]
    assert stats["tenant"] == "acme" and stats["dim"] == DIM and stats["episodes"] == 1
    assert stats["metric"] == "cosine" and stats["max_top_k"] == 1000


def test_the_quota_refusal_is_a_tool_error(make_tenant, make_rpc):
    _, key = make_tenant("small", max_episodes=1)
    rpc = make_rpc(key)
    rpc.result("remember", {"embedding": vec(1)})
    refused = rpc.result("remember", {"embedding": vec(2)})
    assert refused["isError"] is True and refused["content"][0]["text"].startswith("max_episodes")


def test_each_tool_call_counts_against_the_rate_limit_and_nothing_else_does(make_tenant, make_rpc):
    _, key = make_tenant("limited", rate_limit=2)
    rpc = make_rpc(key)
    for _ in range(5):  # the handshake and the listing are free
        assert rpc.request("tools/list").status_code == 200
    first = rpc.call("memory_stats")
    assert first.status_code == 200 and first["X-RateLimit-Remaining"] == "1"
    assert rpc.call("recall", {"embedding": vec(1)}).status_code == 200
    refused = rpc.call("memory_stats")
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert error_of(refused)["code"] == -32012 and error_of(refused)["message"].startswith("rate limit exceeded")


def test_tool_calls_are_audited_with_the_tool_as_op(rpc, settings, tmp_path):
    settings.AGENT_MEM_AUDIT_LOG = str(tmp_path / "audit.jsonl")
    rpc.result("remember", {"embedding": vec(1)})
    rpc.call("remember", {"embedding": [1.0]})
    rpc.result("recall", {"embedding": vec(1)})
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    tool_lines = [(line["op"], line["outcome"]) for line in lines if line.get("via") == "mcp"]
    assert tool_lines == [("remember", "ok"), ("remember", "invalid_params"), ("recall", "ok")]
    assert all(line["tenant_id"] == "acme" and line["key_prefix"] for line in lines)


def test_a_recall_counts_as_a_query_in_the_usage(rpc, tenant):
    rpc.result("remember", {"embedding": vec(1)})
    rpc.result("recall", {"embedding": vec(1)})
    rows = UsageMinute.objects.filter(tenant=tenant[0])
    assert sum(r.queries for r in rows) == 1 and sum(r.stores for r in rows) == 1


def test_the_cap_counts_escaped_characters(rpc):
    tags = [f"{i:03d}" + "\u0001" * 125 for i in range(64)]  # each byte becomes six in JSON
    for i in range(30):
        rpc.result("remember", {"embedding": vec(i), "tags": tags})
    r = rpc.call("recall", {"embedding": vec(0), "top_k": 30})
    assert len(r.content) <= MAX_RESULT_BYTES
    assert r.json()["result"]["structuredContent"]["omitted"] > 0
