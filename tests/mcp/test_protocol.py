"""The MCP transport in-process (docs/api.md §11): framing, both protocol eras, errors and their
HTTP statuses, authentication before anything runs."""

from __future__ import annotations

import pytest
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY

MODERN = "2026-07-28"
INIT = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}


def envelope(**params) -> dict:
    return {"_meta": {PROTOCOL_VERSION_META_KEY: MODERN, CLIENT_CAPABILITIES_META_KEY: {}}, **params}


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {"HTTP_MCP_PROTOCOL_VERSION": MODERN, "HTTP_MCP_METHOD": method}
    if name is not None:
        headers["HTTP_MCP_NAME"] = name
    return headers


def test_initialize_answers_statelessly_with_the_clients_version(rpc):
    r = rpc.request("initialize", INIT)
    assert r.status_code == 200 and r["Content-Type"] == "application/json"
    assert "Mcp-Session-Id" not in r  # stateless: no session to remember
    result = r.json()["result"]
    assert result["protocolVersion"] == "2025-11-25"
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["serverInfo"]["name"] == "memcloud" and result["instructions"]


def test_an_unknown_client_version_gets_the_newest_handshake_version(rpc):
    r = rpc.request("initialize", {**INIT, "protocolVersion": "1999-01-01"})
    assert r.json()["result"]["protocolVersion"] == "2025-11-25"


def test_a_notification_is_accepted_with_202_and_no_body(rpc):
    r = rpc.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert r.status_code == 202 and r.content == b""


def test_ping(rpc):
    assert rpc.request("ping").json()["result"] == {}


@pytest.mark.parametrize("body, code", [
    (b"{not json", -32700),
    (b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', -32600),
    (b'"ping"', -32600),
    (b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}', -32600),
])
def test_malformed_messages_are_400_with_a_json_rpc_error(rpc, body, code):
    r = rpc.post(body)
    assert r.status_code == 400 and r.json()["error"]["code"] == code


def test_an_unknown_method_is_method_not_found(rpc):
    r = rpc.request("prompts/list")
    assert r.json()["error"]["code"] == -32601


def test_invalid_params_of_a_method_name_the_parameter(rpc):
    r = rpc.request("tools/call", {"arguments": {}})
    error = r.json()["error"]
    assert error["code"] == -32602 and "name" in error["message"]


def test_an_unsupported_version_header_is_400(rpc):
    r = rpc.request("tools/list", HTTP_MCP_PROTOCOL_VERSION="1999-01-01")
    assert r.status_code == 400 and "1999-01-01" in r.json()["error"]["message"]


@pytest.mark.parametrize("headers", [{}, {"HTTP_AUTHORIZATION": "Bearer mc_nope"},
                                     {"HTTP_AUTHORIZATION": "Token abc"}])
def test_no_key_or_a_wrong_key_is_401_before_the_body_is_read(make_rpc, headers):
    r = make_rpc(None).post(b"{not even json", **headers)
    assert r.status_code == 401 and r["WWW-Authenticate"] == 'Bearer realm="memcloud"'
    assert r.json()["error"]["code"] == -32010 and r.json()["id"] is None
    r = make_rpc(None).request("tools/call", {"name": "remember", "arguments": {}}, **headers)
    assert r.status_code == 401 and isinstance(r.json()["id"], int)


def test_get_is_405(client, tenant):
    r = client.get("/mcp", HTTP_AUTHORIZATION=f"Bearer {tenant[1]}")
    assert r.status_code == 405 and "POST" in r["Allow"]


# ----- the 2026-07-28 envelope -----

def test_discover_answers_the_modern_versions(rpc):
    r = rpc.request("server/discover", envelope(), **modern_headers("server/discover"))
    assert r.status_code == 200
    result = r.json()["result"]
    assert result["supportedVersions"] == [MODERN] and result["capabilities"]["tools"] == {"listChanged": False}


def test_modern_tools_call(rpc):
    params = envelope(name="memory_stats", arguments={})
    r = rpc.request("tools/call", params, **modern_headers("tools/call", "memory_stats"))
    assert r.status_code == 200 and r.json()["result"]["structuredContent"]["dim"] == 8


def test_modern_request_without_the_envelope_is_invalid_params(rpc):
    r = rpc.request("tools/list", {}, **modern_headers("tools/list"))
    assert r.status_code == 400 and r.json()["error"]["code"] == -32602 and "_meta" in r.json()["error"]["message"]


def test_modern_headers_must_match_the_body(rpc):
    r = rpc.request("tools/list", envelope(), **modern_headers("tools/call"))
    assert r.status_code == 400 and r.json()["error"]["code"] == -32020


def test_modern_bad_arguments_are_400(rpc):
    params = envelope(name="remember", arguments={"embedding": [1.0]})
    r = rpc.request("tools/call", params, **modern_headers("tools/call", "remember"))
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("embedding:")
