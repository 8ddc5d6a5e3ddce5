"""Memcloud as MCP tools, end to end, with the official `mcp` Python SDK (pip install mcp==2.3.0).

    MEMCLOUD_URL=http://127.0.0.1:8080 MEMCLOUD_API_KEY=mc_... python examples/mcp_memory.py

Connects to <MEMCLOUD_URL>/mcp with the key, lists the tools, remembers two outcomes and recalls
the one nearest to a new situation. Embeddings stand in for a model's here (the tenant's dim,
read with memory_stats); a tenant that embeds text takes `text` and `query` instead."""

from __future__ import annotations

import asyncio
import os
import random

from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


async def main() -> None:
    url = os.environ.get("MEMCLOUD_URL", "http://127.0.0.1:8080").rstrip("/") + "/mcp"
    headers = {"Authorization": f"Bearer {os.environ['MEMCLOUD_API_KEY']}"}
    async with create_mcp_http_client(headers=headers) as http, \
            streamable_http_client(url, http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        print("tools:", ", ".join(tool.name for tool in (await session.list_tools()).tools))
        dim = (await session.call_tool("memory_stats", {})).structured_content["dim"]
        rng = random.Random(7)
        pinned = [rng.gauss(0, 1) for _ in range(dim)]
        retried = [rng.gauss(0, 1) for _ in range(dim)]
        for embedding, task, reward in ((pinned, "flaky-test/pinned-seed", 0.9),
                                        (retried, "flaky-test/retry-loop", 0.1)):
            stored = await session.call_tool("remember", {"embedding": embedding, "task_id": task,
                                                          "reward": reward, "tags": ["flaky-test"]})
            print("remembered", stored.structured_content["id"], task)
        nearby = [x + rng.gauss(0, 0.1) for x in pinned]  # a new situation much like the first
        found = await session.call_tool("recall", {"embedding": nearby, "top_k": 2, "min_reward": 0.5,
                                                   "tags_any": ["flaky-test"]})
        print(found.content[0].text)


if __name__ == "__main__":
    asyncio.run(main())
