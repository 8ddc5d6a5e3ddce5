"""MCP over streamable HTTP, stateless and in plain JSON (docs/api.md §11, docs/design.md §11): all
of the protocol handling, with the official SDK's types and validators (mcp_types: the JSON-RPC
frames, each method's parameters per protocol version, each result per version, the modern
per-request envelope). One POST carries one JSON-RPC message; no session, no event stream.

Two eras are served: the handshake era (initialize, then requests with MCP-Protocol-Version up to
2025-11-25) and the per-request envelope of 2026-07-28 (server/discover, `_meta` on every request).
Nothing here touches tenants or episodes: mcpserver/views.py authenticates and dispatches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS, InboundLadderRejection, classify_inbound_request
from mcp.types import (
    CallToolResult,
    DiscoverResult,
    EmptyResult,
    Implementation,
    InitializeResult,
    ListToolsResult,
    ServerCapabilities,
    TextContent,
    Tool,
    ToolAnnotations,
    ToolsCapability,
)
from mcp_types import methods
from mcp_types.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    JSONRPCNotification,
    JSONRPCRequest,
)
from mcp_types.version import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    LATEST_HANDSHAKE_VERSION,
    MODERN_PROTOCOL_VERSIONS,
)
from pydantic import ValidationError

VERSION_HEADER = "mcp-protocol-version"
# A handshake-era request without the version header is read as this version (the transport's rule).
ASSUMED_VERSION = "2025-03-26"
SERVER_INFO = Implementation(name="memcloud", title="Memcloud", version="1.0.0",
                             description="Hosted episodic memory for agents")
INSTRUCTIONS = ("Long-term memory for this agent. Use recall before answering to find what was learnt "
                "before; remember what is worth keeping (a fact, an outcome, a preference); forget what is "
                "wrong or asked to be forgotten.")

# Errors of our own, in the implementation-defined band (-32000..-32019; the SDK keeps -32000, -32001).
UNAUTHORIZED = -32010
FORBIDDEN = -32011
RATE_LIMITED = -32012
UNAVAILABLE = -32013


class RpcError(Exception):
    """A JSON-RPC error answer; `status` is the HTTP status it travels with."""

    def __init__(self, code: int, message: str, *, status: int = 200, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.status, self.data = code, message, status, data


@dataclass(frozen=True)
class Message:
    """One parsed JSON-RPC message; `id` is None for a notification."""

    id: int | str | None
    method: str
    params: dict[str, Any] | None
    version: str  # the protocol version it is read under
    modern: bool  # the 2026-07-28 envelope (else the handshake era)
    parsed: Any = None  # the SDK's model of the request (mcp.types), once validated

    @property
    def is_notification(self) -> bool:
        return self.id is None


def status_for(code: int, modern: bool) -> int:
    """The modern transport maps error codes to HTTP statuses; the handshake era answers errors of a
    well-formed request with 200, as its clients expect."""
    if modern or code in (PARSE_ERROR, INVALID_REQUEST):
        return ERROR_CODE_HTTP_STATUS.get(code, 200)
    return 200


def request_id_of(body: bytes) -> int | str | None:
    """The id of a body, if it has a usable one (for an error answered before it is parsed)."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = decoded.get("id") if isinstance(decoded, dict) else None
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def read_message(body: bytes, headers: Mapping[str, str]) -> Message:
    """Parse and validate one POSTed message. `headers`: lowercase names (WSGI joins a repeated
    header's values with commas, so a repeated routing header no longer matches the body). Raises
    RpcError.

    Not split: the checks run in the order the transport defines (frame, era, envelope, method,
    parameters) and each needs what the one before it established."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RpcError(PARSE_ERROR, "Parse error: the body is not JSON", status=400) from None
    if isinstance(decoded, list):
        raise RpcError(INVALID_REQUEST, "Batches are not supported: send one JSON-RPC message per POST",
                       status=400)
    if not isinstance(decoded, dict):
        raise RpcError(INVALID_REQUEST, "The body must be one JSON-RPC request or notification", status=400)
    notification = "id" not in decoded
    try:
        frame = (JSONRPCNotification if notification else JSONRPCRequest).model_validate(decoded)
    except ValidationError:
        raise RpcError(INVALID_REQUEST, "Invalid JSON-RPC message", status=400) from None
    header = headers.get(VERSION_HEADER)
    modern = header in MODERN_PROTOCOL_VERSIONS
    if modern and not notification:
        verdict = classify_inbound_request(decoded, headers=headers)
        if isinstance(verdict, InboundLadderRejection):
            raise RpcError(verdict.code, verdict.message, data=verdict.data, status=status_for(verdict.code, True))
        version = verdict.protocol_version
    elif header is None or header in HANDSHAKE_PROTOCOL_VERSIONS:
        version = header or ASSUMED_VERSION
        if frame.method == "initialize":
            version = negotiated_version(frame.params)
    else:
        raise RpcError(INVALID_REQUEST, f"Unsupported MCP-Protocol-Version {header!r}; supported: "
                       f"{', '.join((*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS))}", status=400)
    message = Message(id=None if notification else frame.id, method=frame.method, params=frame.params,
                      version=version, modern=modern)
    if notification:
        return message  # acknowledged and dropped: a stateless server has nothing to do with one
    try:
        parsed = methods.parse_client_request(frame.method, version, frame.params)
    except KeyError:
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {frame.method}",
                       status=status_for(METHOD_NOT_FOUND, modern)) from None
    except ValidationError as exc:
        raise RpcError(INVALID_PARAMS, f"Invalid params: {_first_error(exc)}",
                       status=status_for(INVALID_PARAMS, modern)) from None
    return Message(id=message.id, method=message.method, params=message.params, version=version, modern=modern,
                   parsed=parsed)


def negotiated_version(params: dict[str, Any] | None) -> str:
    """The handshake's answer: the client's version if served, else the newest handshake version."""
    requested = (params or {}).get("protocolVersion")
    return requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"] if part not in ("jsonrpc", "id"))
    return f"{where}: {error['msg']}" if where else error["msg"]


# ----- results -----

def _serialized(message: Message, result: Any) -> dict[str, Any]:
    """`result` (an mcp.types model) checked against the message's version of the schema."""
    data = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    return methods.serialize_server_result(message.method, message.version, data)


def response_body(message: Message, result: Any) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": message.id, "result": _serialized(message, result)})


def error_body(request_id: int | str | None, error: RpcError) -> bytes:
    payload: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        payload["data"] = error.data
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": payload})


def capabilities() -> ServerCapabilities:
    return ServerCapabilities(tools=ToolsCapability(list_changed=False))


def initialize_result(message: Message) -> InitializeResult:
    return InitializeResult(protocol_version=message.version, capabilities=capabilities(), server_info=SERVER_INFO,
                            instructions=INSTRUCTIONS)


def discover_result() -> DiscoverResult:
    return DiscoverResult(supported_versions=list(MODERN_PROTOCOL_VERSIONS), capabilities=capabilities(),
                          instructions=INSTRUCTIONS)


def empty_result() -> EmptyResult:
    return EmptyResult()


def tool(*, name: str, title: str, description: str, input_schema: dict[str, Any], output_schema: dict[str, Any],
         read_only: bool, destructive: bool) -> Tool:
    return Tool(name=name, title=title, description=description, input_schema=input_schema,
                output_schema=output_schema,
                annotations=ToolAnnotations(title=title, read_only_hint=read_only,
                                            destructive_hint=destructive if not read_only else None,
                                            open_world_hint=False))


def tools_result(tools: list[Tool]) -> ListToolsResult:
    return ListToolsResult(tools=tools)


def call_result(*, structured: dict[str, Any] | None, text: str, is_error: bool = False) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=text)], structured_content=structured, is_error=is_error)


def call_params(message: Message) -> tuple[str, dict[str, Any]]:
    """tools/call's tool name and arguments (the SDK has checked their types)."""
    params = message.parsed.params
    return params.name, dict(params.arguments or {})
