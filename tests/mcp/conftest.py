"""In-process MCP requests through Django's test client: one JSON-RPC message per POST."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

_ids = itertools.count(1)


class Rpc:
    def __init__(self, client, key: str | None):
        self.client, self.key = client, key

    def post(self, body: Any, *, key: str | None = None, **headers: str):
        key = key or self.key
        if key:
            headers.setdefault("HTTP_AUTHORIZATION", f"Bearer {key}")
        return self.client.post("/mcp", data=body if isinstance(body, (bytes, str)) else orjson.dumps(body),
                                content_type="application/json", HTTP_ACCEPT="application/json, text/event-stream",
                                **headers)

    def request(self, method: str, params: dict | None = None, **kwargs):
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": next(_ids), "method": method}
        if params is not None:
            body["params"] = params
        return self.post(body, **kwargs)

    def call(self, name: str, arguments: dict | None = None, **kwargs):
        """tools/call; the HTTP response (its JSON: .json())."""
        return self.request("tools/call", {"name": name, "arguments": arguments or {}}, **kwargs)

    def result(self, name: str, arguments: dict | None = None, **kwargs) -> dict:
        response = self.call(name, arguments, **kwargs)
        assert response.status_code == 200, response.content
        body = response.json()
        assert "result" in body, body
        return body["result"]


@pytest.fixture
def rpc(client, tenant):
    return Rpc(client, tenant[1])


@pytest.fixture
def make_rpc(client):
    return lambda key: Rpc(client, key)
