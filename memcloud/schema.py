"""OpenAPI details drf-spectacular cannot infer: our key authentication, our custom fields, the
{"error": ...} answers every endpoint can give, and the rate-limit headers (docs/api.md §2, §4, §5)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "What is wrong, in words; names the field."}},
    "required": ["error"],
    "additionalProperties": False,
}
ERRORS = {
    "400": "Invalid input: the message names the field.",
    "401": "Missing, unknown, revoked or expired API key.",
    "403": "Inactive tenant, a key without the scope this endpoint needs, or the max_episodes quota.",
    "404": "No such episode for this tenant.",
    "409": "An episode with this id exists with other content.",
    "413": "Request body too large.",
    "415": "A body sent with a Content-Type other than application/json.",
    "429": "Rate limit exceeded: retry after Retry-After seconds.",
    "503": "Database unavailable: retry later.",
}
RATE_HEADERS = {
    "X-RateLimit-Limit": "Requests allowed per window (sent when a limit applies).",
    "X-RateLimit-Remaining": "Requests left in the current window.",
    "X-RateLimit-Reset": "Whole seconds until the window ends.",
    "RateLimit-Policy": 'IETF draft: the quota policy, e.g. "default";q=50;w=60.',
    "RateLimit": 'IETF draft: the live counters, e.g. "default";r=12;t=40.',
}


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.ApiKeyAuthentication"
    name = ["bearerAuth", "apiKeyHeader"]

    def get_security_requirement(self, auto_schema) -> list[dict[str, list]]:
        return [{"bearerAuth": []}, {"apiKeyHeader": []}]  # either header: OR, not AND

    def get_security_definition(self, auto_schema) -> list[dict[str, Any]]:
        return [
            {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer mc_<prefix>_<secret>"},
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]


class EmbeddingFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "episodes.serializers.EmbeddingField"

    def map_serializer_field(self, auto_schema, direction) -> dict[str, Any]:
        return {"oneOf": [
                    {"type": "array", "items": {"type": "number"}, "minItems": 1,
                     "description": "Exactly the tenant's dim finite numbers (float32)."},
                    {"type": "string", "format": "byte",
                     "description": "Base64 (standard alphabet, padded) of the tenant's dim little-endian "
                                    "float32 values: 4 x dim bytes, each finite."}],
                "description": "The tenant's dim finite float32 numbers, as an array or as base64 of their "
                               "little-endian bytes; not all zero for cosine."}


class TagsFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "episodes.fields.TagsField"

    def map_serializer_field(self, auto_schema, direction) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": self.target.max_length},
                "maxItems": self.target.max_tags}


class JSONSizedFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "episodes.fields.JSONSizedField"

    def map_serializer_field(self, auto_schema, direction) -> dict[str, Any]:
        schema: dict[str, Any] = (
            {"type": "object", "additionalProperties": {}} if self.target.kind is dict else {"type": "array", "items": {}}
        )
        schema["description"] = f"At most {self.target.max_bytes} bytes as JSON."
        if self.target.allow_null:
            schema["nullable"] = True
        return schema


class PassThroughFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "episodes.serializers.PassThroughField"

    def map_serializer_field(self, auto_schema, direction) -> dict[str, Any]:
        return {}  # any JSON value; the batch's items are pointed at the episode schema below


def _errors_for(path: str, method: str) -> list[str]:
    codes = ["400", "401", "403", "429", "503"]
    if method in ("post", "put", "patch"):
        codes += ["413", "415"]
    if "{" in path or path == "/v1/load":  # an episode or a snapshot of this tenant's that is not there
        codes.append("404")
    if method == "post" and path in ("/v1/episodes", "/v1/episodes/batch"):
        codes.append("409")
    return sorted(codes)


def add_errors_and_headers(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: every /v1 operation's error answers and rate-limit headers."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    headers = components.setdefault("headers", {})
    for name, text in RATE_HEADERS.items():
        headers[name] = {"description": text, "schema": {"type": "string" if "Policy" in name or name == "RateLimit"
                                                         else "integer"}}
    headers["Retry-After"] = {"description": "Whole seconds until the window ends.", "schema": {"type": "integer"}}
    for name, body in components["schemas"].items():
        if name.endswith("Request") and body.get("type") == "object":
            body["additionalProperties"] = False  # unknown fields are a 400 (docs/api.md §9)
    batch = components["schemas"].get("EpisodeBatchInputRequest")
    if batch and "EpisodeInputRequest" in components["schemas"]:
        batch["properties"]["episodes"].update(
            items={"$ref": "#/components/schemas/EpisodeInputRequest"}, minItems=1,
            maxItems=settings.AGENT_MEM_MAX_BATCH)
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            if method == "post" and "requestBody" not in operation:  # e.g. checkpoint: `{}` or no body
                operation["requestBody"] = {"required": False, "content": {"application/json": {
                    "schema": {"type": "object", "additionalProperties": False}}}}
            responses = operation.setdefault("responses", {})
            for code in _errors_for(path, method):
                responses.setdefault(code, {"description": ERRORS[code]})
                responses[code].setdefault(
                    "content", {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}})
            for code, response in responses.items():
                if code == "401":  # before authentication: no tenant, no limit to report
                    continue
                hdrs = response.setdefault("headers", {})
                for name in RATE_HEADERS:
                    hdrs[name] = {"$ref": f"#/components/headers/{name}"}
                if code == "429":
                    hdrs["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    return result
