"""`POST /mcp`: the MCP endpoint (docs/api.md §11). A TenantApi like every /v1 view, so the key,
its tenant, its scope and the request's usage are handled exactly as there; each tools/call is
counted against the rate limit, checked against the tool's scope, audited and measured."""

from __future__ import annotations

import time

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request

from core import metrics
from core.audit import audit
from core.errors import MemcloudError
from tenants.api import TenantApi
from tenants.models import Scope
from tenants.throttling import RateLimited

from . import protocol, tools
from .protocol import Message, RpcError

JSON = "application/json"
# The HTTP status of an error raised before a message is read (authentication, scope, rate limit, an
# outage) -> its JSON-RPC code; anything else is an internal error.
STATUS_CODES = {401: protocol.UNAUTHORIZED, 403: protocol.FORBIDDEN, 405: protocol.METHOD_NOT_FOUND,
                429: protocol.RATE_LIMITED, 503: protocol.UNAVAILABLE}


class McpApi(TenantApi):
    required_scope = Scope.READ  # any key may connect; each tool checks its own scope
    counts_every_request = False  # tools/call counts itself: the handshake and the listing are free

    @extend_schema(exclude=True)  # JSON-RPC, not REST: its contract is docs/api.md §11, not the OpenAPI document
    def post(self, request: Request) -> HttpResponse:
        headers = {name.lower(): value for name, value in request.headers.items()}
        body = request.body
        try:
            message = protocol.read_message(body, headers)
            if message.is_notification:
                return HttpResponse(status=202)
            return self._json(protocol.response_body(message, self._answer(message)), 200)
        except RpcError as error:
            return self._json(protocol.error_body(protocol.request_id_of(body), error), error.status)

    def _answer(self, message: Message):
        method = message.method
        if method == "tools/call":
            return self._call_tool(message)
        if method == "tools/list":
            return protocol.tools_result([
                protocol.tool(name=t.name, title=t.title, description=t.description,
                              input_schema=t.input_schema(self.tenant), output_schema=t.output_schema,
                              read_only=t.read_only, destructive=t.destructive)
                for t in tools.visible_tools(self.api_key.scope)])
        if method == "initialize":
            return protocol.initialize_result(message)
        if method == "server/discover":
            return protocol.discover_result()
        if method == "ping":
            return protocol.empty_result()
        raise RpcError(protocol.METHOD_NOT_FOUND, f"Method not found: {method} (this server offers tools only)",
                       status=protocol.status_for(protocol.METHOD_NOT_FOUND, message.modern))

    def _call_tool(self, message: Message):
        """Scope, then the rate limit, then the tool; every outcome is audited and counted."""
        name, arguments = protocol.call_params(message)
        tool = tools.TOOLS.get(name)
        if tool is None:
            raise RpcError(protocol.INVALID_PARAMS, f"Unknown tool: {name}; tools: {', '.join(tools.TOOLS)}",
                           status=protocol.status_for(protocol.INVALID_PARAMS, message.modern))
        scope = self.api_key.scope
        if not tools.allowed(tool, scope):
            self._record(tool.name, "forbidden")
            raise RpcError(protocol.FORBIDDEN, f"{tool.name}: this API key has the '{scope}' scope; the tool "
                           f"needs '{tool.scope}'", status=403)
        try:
            self.count_request()
        except RateLimited as exc:
            self._record(tool.name, "rate_limited")
            raise RpcError(protocol.RATE_LIMITED, str(exc), status=429) from None
        started = time.perf_counter()
        try:
            try:
                outcome = tools.run(tool, tools.Call(tenant=self.tenant, key_prefix=self.key_prefix,
                                                     arguments=arguments, user=self.bound_user))
            except MemcloudError as exc:
                if exc.status != 400:  # a refusal of a valid call: the model reads it
                    raise tools.ToolFailed(str(exc)) from None
                raise tools.InvalidArguments(str(exc)) from None  # the service's own argument check
        except tools.InvalidArguments as exc:
            self._record(tool.name, "invalid_params", started)
            raise RpcError(protocol.INVALID_PARAMS, str(exc),
                           status=protocol.status_for(protocol.INVALID_PARAMS, message.modern)) from None
        except tools.ToolFailed as exc:
            self._record(tool.name, "tool_error", started)
            return protocol.call_result(structured=None, text=str(exc), is_error=True)
        self._record(tool.name, "ok", started)
        self.answered_query = outcome.is_query
        return protocol.call_result(structured=outcome.structured, text=outcome.text)

    def _record(self, tool: str, outcome: str, started: float | None = None) -> None:
        metrics.MCP_TOOL_CALLS.labels(tool=tool, outcome=outcome).inc()
        if started is not None:
            metrics.MCP_TOOL_DURATION.labels(tool=tool).observe(time.perf_counter() - started)
        audit(tool, tenant_id=self.tenant.slug, key_prefix=self.key_prefix, via="mcp", outcome=outcome)

    def handle_exception(self, exc: Exception) -> HttpResponse:
        """Refusals before a message is read (no key, a bad key, an outage) answer with their HTTP
        status and headers, as on /v1, and a JSON-RPC error body an MCP client can show."""
        response = super().handle_exception(exc)
        data = getattr(response, "data", None)
        text = data.get("error") if isinstance(data, dict) else None
        error = RpcError(STATUS_CODES.get(response.status_code, -32603), text or "internal error")
        try:
            request_id = protocol.request_id_of(self.request.body)
        except Exception:  # the body cannot be read any more: answer without the id
            request_id = None
        answer = self._json(protocol.error_body(request_id, error), response.status_code)
        for header, value in response.items():
            if header.lower() not in ("content-type", "content-length"):
                answer[header] = value
        return answer

    @staticmethod
    def _json(body: bytes, status: int) -> HttpResponse:
        return HttpResponse(body, status=status, content_type=JSON)
