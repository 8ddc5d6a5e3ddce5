"""memcloud/schema.py: /v1/openapi.json is valid OpenAPI 3, covers every /v1 endpoint, and what the
service answers matches it (docs/api.md §4)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import jsonschema
import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db(transaction=True)
DIM = 8


@pytest.fixture
def schema(client) -> dict:
    r = client.get("/v1/openapi.json")
    assert r.status_code == 200
    return r.json()


def v1_paths() -> set[str]:
    """Every /v1 route the URLconf serves, in OpenAPI form ({name} parameters)."""
    out = set()

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif isinstance(p, URLPattern) and route.startswith("v1/") and p.name != "openapi":
                out.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))

    walk(get_resolver().url_patterns, "")
    return out


def nullable_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable` as JSON Schema understands it."""
    if isinstance(node, dict):
        node = {k: nullable_to_json_schema(v) for k, v in node.items()}
        if node.pop("nullable", False):
            node = {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [nullable_to_json_schema(v) for v in node]
    return node


def check(schema: dict, path: str, method: str, response) -> None:
    spec = schema["paths"][path][method]["responses"][str(response.status_code)]
    body_schema = spec["content"]["application/json"]["schema"]
    wrapped = nullable_to_json_schema({**body_schema, "components": schema["components"]})
    jsonschema.validate(response.json(), wrapped)
    for name in spec.get("headers", {}):
        if name.startswith(("X-RateLimit", "RateLimit")):
            assert name in response


def test_it_is_valid_openapi_3_and_covers_every_v1_endpoint(schema):
    validate(schema)
    assert schema["openapi"].startswith("3.")
    assert v1_paths() <= set(schema["paths"]), v1_paths() - set(schema["paths"])
    assert schema["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer mc_<prefix>_<secret>"},
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            assert op["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}], (path, method)
            for code in ("400", "401", "403", "429", "503"):
                assert op["responses"][code]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"}, (path, method, code)
            success = [c for c in op["responses"] if c.startswith("2")]
            assert success and all("content" in op["responses"][c] for c in success), (path, method)
            if method == "post":
                assert "requestBody" in op and {"413", "415"} <= set(op["responses"]), path


def test_a_body_of_another_media_type_answers_the_documented_415(api, make_tenant):
    _, key = make_tenant("acme", dim=DIM)
    client = api.as_key(key)
    for content_type in ("", "text/plain"):
        r = client.generic("POST", "/v1/load", b'{"path": "x"}', content_type=content_type)
        assert r.status_code == 415 and "error" in r.json(), (content_type, r.content)


def test_what_the_service_answers_matches_the_schema(api, make_tenant, schema, settings):
    settings.AGENT_MEM_RATE_LIMIT = 100
    _, key = make_tenant("acme", dim=DIM)
    client = api.as_key(key)
    body = {"task_id": "task_1", "state_embedding": [1.0] + [0.0] * (DIM - 1), "reward": 0.5,
            "tags": ["a"], "metadata": {"k": 1}, "steps": [{"s": 1}], "id": str(uuid.uuid4())}
    r = client.post("/v1/episodes", body, format="json")
    check(schema, "/v1/episodes", "post", r)
    eid = r.json()["id"]
    check(schema, "/v1/episodes", "post", client.post("/v1/episodes", body, format="json"))  # 200 retry
    check(schema, "/v1/episodes", "post", client.post("/v1/episodes", {**body, "reward": 2.0}, format="json"))  # 409
    check(schema, "/v1/episodes/batch", "post", client.post("/v1/episodes/batch", {"episodes": [
        {k: v for k, v in body.items() if k != "id"}]}, format="json"))
    check(schema, "/v1/episodes/{episode_id}", "get", client.get(f"/v1/episodes/{eid}"))
    check(schema, "/v1/query", "post", client.post("/v1/query", {"query_embedding": body["state_embedding"],
                                                                 "include_embedding": True}, format="json"))
    check(schema, "/v1/query", "post", client.post("/v1/query", {"topk": 1}, format="json"))  # 400
    check(schema, "/v1/stats", "get", client.get("/v1/stats"))
    for path, payload in (("/v1/prune/older-than", {"timestamp_cutoff_ms": 0}),
                          ("/v1/prune/keep-newest", {"n": 10}), ("/v1/prune/keep-highest-reward", {"n": 10})):
        check(schema, path, "post", client.post(path, payload, format="json"))
    check(schema, "/v1/episodes/{episode_id}", "delete", client.delete(f"/v1/episodes/{eid}"))
    check(schema, "/v1/episodes/{episode_id}", "get", client.get(f"/v1/episodes/{eid}"))  # 404
    api.credentials()
    check(schema, "/v1/stats", "get", api.get("/v1/stats"))  # 401


def test_docs_are_served_without_a_cdn(client):
    r = client.get("/docs")
    assert r.status_code == 200
    html = r.content.decode()
    assert "swagger-ui" in html and "/v1/openapi.json" in html
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not src.startswith(("http://", "https://", "//")), src


def test_embeddings_are_described_as_numbers_or_base64(schema):
    """docs/api.md §3.1: an array of numbers or base64 of little-endian float32, both written down."""
    parts = schema["components"]["schemas"]
    for component, field in (("EpisodeInputRequest", "state_embedding"), ("QueryInputRequest", "query_embedding"),
                             ("EpisodeOutput", "state_embedding")):
        forms = parts[component]["properties"][field]["oneOf"]
        assert {f["type"] for f in forms} == {"array", "string"}
        assert next(f for f in forms if f["type"] == "string")["format"] == "byte"
    fmt = parts["QueryInputRequest"]["properties"]["embedding_format"]
    fmt = next((s for s in fmt.get("allOf", []) if "$ref" in s), fmt)  # an enum component with a default
    enum = parts[fmt["$ref"].rsplit("/", 1)[-1]]["enum"] if "$ref" in fmt else fmt["enum"]
    assert set(enum) == {"float", "base64"}
    listing = {p["name"] for p in schema["paths"]["/v1/episodes"]["get"]["parameters"]}
    detail = {p["name"] for p in schema["paths"]["/v1/episodes/{episode_id}"]["get"]["parameters"]}
    assert "embedding_format" in listing and "embedding_format" in detail
