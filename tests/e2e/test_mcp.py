"""Acceptance (issue: MCP endpoint): the official MCP Python client, over its streamable HTTP
transport, against a live gunicorn with several workers. Each `connect` is a new connection (its
own HTTP client), so a remember and the recall after it land on whichever workers gunicorn picks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from mcp.shared.exceptions import MCPError

from mcpserver.tools import MAX_RESULT_BYTES
from tests.e2e.test_metrics import scrape
from tests.support.server import LiveServer
from tests.support.tenants import unique_slug

pytestmark = pytest.mark.e2e
DIM = 16
ALL_TOOLS = {"remember", "recall", "forget", "list_memories", "memory_stats"}
READ_TOOLS = {"recall", "list_memories", "memory_stats"}


@contextlib.asynccontextmanager
async def connect(url: str, key: str | None, *, modern: bool = False) -> AsyncIterator[ClientSession]:
    """A new MCP session on a new HTTP client: the handshake (initialize), or the 2026-07-28 probe."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with create_mcp_http_client(headers=headers) as http, \
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        if modern:
            await session.discover()
        else:
            await session.initialize()
        yield session


def run(url: str, key: str | None, work: Callable[[ClientSession], Awaitable[Any]], *, modern: bool = False) -> Any:
    async def main() -> Any:
        async with connect(url, key, modern=modern) as session:
            return await work(session)

    return asyncio.run(main())


def vector(seed: int) -> list[float]:
    return np.random.default_rng(seed).normal(size=DIM).tolist()


@pytest.fixture(scope="module")
def keys(memcloud_server: LiveServer) -> dict[str, str]:
    slug = unique_slug("mcp")
    admin, write = memcloud_server.create_tenants(
        [(slug, ("--dim", str(DIM)), "admin"), (slug + "-w", ("--dim", str(DIM)), "write")])
    read = memcloud_server.manage("issuekey", slug, "--scope", "read")  # a read key of the first tenant
    return {"admin": admin, "read": read, "write": write}


def test_lists_exactly_the_five_tools_and_a_read_key_only_the_read_tools(memcloud_server, keys):
    async def names(session: ClientSession) -> set[str]:
        listing = await session.list_tools()
        for tool in listing.tools:
            assert tool.description and tool.input_schema["type"] == "object"
            assert tool.input_schema["additionalProperties"] is False
        return {tool.name for tool in listing.tools}

    assert run(memcloud_server.url, keys["admin"], names) == ALL_TOOLS
    assert run(memcloud_server.url, keys["read"], names) == READ_TOOLS
    assert run(memcloud_server.url, keys["admin"], names, modern=True) == ALL_TOOLS


@pytest.mark.parametrize("modern", [False, True], ids=["handshake", "2026-07-28"])
def test_remember_then_recall_on_another_connection_finds_it_at_once(memcloud_server, keys, modern):
    url, key = memcloud_server.url, keys["write"]
    for attempt in range(12):  # many pairs: the two connections are answered by different workers too
        seed = 1000 * modern + attempt
        tag = f"t{seed}"

        async def remember(session: ClientSession, seed=seed, tag=tag) -> str:
            result = await session.call_tool("remember", {"embedding": vector(seed), "tags": [tag], "reward": 1.5})
            assert not result.is_error, result
            return result.structured_content["id"]

        memory_id = run(url, key, remember, modern=modern)

        async def recall(session: ClientSession, seed=seed, tag=tag) -> dict:
            result = await session.call_tool("recall", {"embedding": vector(seed), "top_k": 3, "tags_all": [tag]})
            assert not result.is_error, result
            return result.structured_content

        found = run(url, key, recall, modern=modern)
        best = found["memories"][0]
        assert best["id"] == memory_id and best["score"] == pytest.approx(1.0, abs=1e-5)
        assert best["tags"] == [tag] and best["reward"] == 1.5 and "state_embedding" not in best


def test_text_without_an_embedder_is_refused_naming_the_argument(memcloud_server, keys):
    async def work(session: ClientSession) -> tuple:
        with pytest.raises(MCPError) as stored:
            await session.call_tool("remember", {"text": "the user prefers tea"})
        with pytest.raises(MCPError) as asked:
            await session.call_tool("recall", {"query": "what does the user drink?", "mode": "vector"})
        return stored.value, asked.value

    stored, asked = run(memcloud_server.url, keys["write"], work)
    assert stored.error.message.startswith("text:") and asked.error.message.startswith("query:")


def test_remember_then_recall_by_text_on_a_local_minilm_tenant(memcloud_server):
    pytest.importorskip("sentence_transformers", reason="the embeddings extra is not installed (make embeddings-deps)")
    slug = unique_slug("mcp-text")
    key = memcloud_server.create_tenant(slug, "--embedder", "local-minilm")
    facts = ["The user drinks green tea every morning and dislikes coffee.",
             "The deploy pipeline fails when the staging database migration times out.",
             "Invoices are sent to customers on the first business day of the month."]

    async def remember(session: ClientSession) -> list[str]:
        return [(await session.call_tool("remember", {"text": fact, "task_id": f"fact-{i}"})).structured_content["id"]
                for i, fact in enumerate(facts)]

    async def recall(session: ClientSession) -> dict:
        result = await session.call_tool("recall", {"query": "what does the user like to drink?", "top_k": 3})
        assert not result.is_error, result
        return result.structured_content

    ids = run(memcloud_server.url, key, remember)
    found = run(memcloud_server.url, key, recall)  # another connection: whichever worker answers
    assert found["memories"][0]["id"] == ids[0] and found["memories"][0]["text"] == facts[0]
    assert found["memories"][0]["task_id"] == "fact-0"


def test_a_read_key_cannot_call_a_write_tool_and_nothing_is_stored(memcloud_server, keys):
    async def work(session: ClientSession) -> tuple:
        before = (await session.call_tool("memory_stats", {})).structured_content["episodes"]
        with pytest.raises(MCPError) as refused:
            await session.call_tool("remember", {"embedding": vector(7)})
        after = (await session.call_tool("memory_stats", {})).structured_content["episodes"]
        return refused.value, before, after

    error, before, after = run(memcloud_server.url, keys["read"], work)
    assert "remember" in error.error.message and "'write'" in error.error.message
    assert before == after


def test_bad_arguments_are_a_json_rpc_error_naming_the_argument_and_store_nothing(memcloud_server, keys):
    async def work(session: ClientSession) -> tuple:
        errors = []
        for arguments in ({"embedding": vector(1)[:3]}, {"embedding": vector(1), "reward": "high"},
                          {"embedding": vector(1), "colour": "red"}, {"embedding": vector(1), "ttl_secs": 0}):
            with pytest.raises(MCPError) as refused:
                await session.call_tool("remember", arguments)
            errors.append(refused.value.error)
        listing = await session.call_tool("list_memories", {"limit": 100})
        return errors, listing.structured_content

    slug_key = memcloud_server.create_tenant(unique_slug("mcpbad"), "--dim", str(DIM))
    errors, listing = run(memcloud_server.url, slug_key, work)
    assert [e.code for e in errors] == [-32602] * 4
    assert [e.message.split(":")[0] for e in errors] == ["embedding", "reward", "colour", "ttl_secs"]
    assert listing == {"memories": [], "next_cursor": None}


def test_without_a_key_or_with_a_wrong_one_mcp_answers_401_before_anything_runs(memcloud_server):
    for headers in ({}, {"Authorization": "Bearer mc_wrong_key"}, {"Authorization": "Basic abc"}):
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        r = httpx.post(f"{memcloud_server.url}/mcp", json=body, headers=headers, timeout=30)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.json()["id"] == 1 and r.json()["error"]["code"] == -32010
    with pytest.raises(Exception):  # noqa: B017 - the client surfaces the refused handshake as an error
        run(memcloud_server.url, "mc_wrong_key", lambda session: session.list_tools())


def test_recall_of_fifty_stays_under_the_size_cap(memcloud_server, keys):
    key = memcloud_server.create_tenant(unique_slug("mcpcap"), "--dim", str(DIM))
    tags = [f"{i:03d}-" + "x" * 120 for i in range(64)]  # the largest tags an episode may carry

    async def work(session: ClientSession) -> tuple:
        for seed in range(50):
            await session.call_tool("remember", {"embedding": vector(seed), "tags": tags if seed % 2 else ["small"]})
        small = await session.call_tool("recall", {"embedding": vector(0), "top_k": 50, "tags_all": ["small"]})
        large = await session.call_tool("recall", {"embedding": vector(0), "top_k": 50})
        return small, large

    small, large = run(memcloud_server.url, key, work)
    for result in (small, large):
        size = len(json.dumps(result.model_dump(by_alias=True, mode="json", exclude_none=True)).encode())
        assert size <= MAX_RESULT_BYTES
    assert len(small.structured_content["memories"]) == 25 and small.structured_content["omitted"] == 0
    kept, omitted = len(large.structured_content["memories"]), large.structured_content["omitted"]
    assert kept + omitted == 50 and omitted > 0 and str(omitted) in large.content[0].text


def test_tool_calls_count_against_the_rate_limit_and_are_audited_and_measured(server_db_env):
    audit_log = Path(tempfile.mkdtemp(prefix="mcp-audit-")) / "audit.jsonl"
    with LiveServer(workers=2, env={**server_db_env, "AGENT_MEM_AUDIT_LOG": str(audit_log)}) as server:
        slug = unique_slug("mcprl")
        key = server.create_tenant(slug, "--dim", str(DIM), "--rate-limit", "3")

        async def work(session: ClientSession) -> tuple:
            await session.list_tools()  # the handshake and the listing are not tool calls: free
            outcomes = []
            for seed in range(4):
                try:
                    result = await session.call_tool("remember", {"embedding": vector(seed)})
                    outcomes.append("ok" if not result.is_error else "error")
                except MCPError as exc:
                    outcomes.append(exc.error.message)
            return outcomes

        before = scrape(server.url)
        outcomes = run(server.url, key, work)
        assert outcomes[:3] == ["ok"] * 3 and outcomes[3].startswith("rate limit exceeded")
        after = scrape(server.url)
        lines = [json.loads(line) for line in audit_log.read_text().splitlines()]
        mine = [line for line in lines if line["tenant_id"] == slug and line.get("via") == "mcp"]
        assert [(line["op"], line["outcome"]) for line in mine] == [("remember", "ok")] * 3 + [
            ("remember", "rate_limited")]
        assert sum(1 for line in lines if line["tenant_id"] == slug and line["op"] == "store_episode") == 3

        def delta(name: str) -> float:
            return after.get(name, 0.0) - before.get(name, 0.0)

        assert delta('agent_mem_mcp_tool_calls_total{outcome="ok",tool="remember"}') == 3
        assert delta('agent_mem_mcp_tool_calls_total{outcome="rate_limited",tool="remember"}') == 1
        assert delta("agent_mem_store_episodes_total") == 3


def test_the_readme_example_runs_against_a_live_server(memcloud_server):
    key = memcloud_server.create_tenant(unique_slug("mcpex"), "--dim", "32")
    example = Path(__file__).resolve().parents[2] / "examples" / "mcp_memory.py"
    env = {**os.environ, "MEMCLOUD_URL": memcloud_server.url, "MEMCLOUD_API_KEY": key}
    done = subprocess.run([sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "tools: remember, recall, forget, list_memories, memory_stats"
    assert lines[3].startswith("1 memories, best first") and "flaky-test/pinned-seed" in lines[4]
