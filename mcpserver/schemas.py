"""JSON Schemas of the MCP tools' arguments, built from episodes/spec.py: a limit is written there
once and reaches the serializers, the fast path and these schemas alike (docs/api.md §11)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from episodes import spec


def field_schema(field: spec.Field, description: str, *, dim: int | None = None) -> dict[str, Any]:
    """The JSON Schema of one spec field, for a model to read: type, limits, nullability."""
    kind = field.kind
    schema: dict[str, Any]
    if kind in ("text", "uuid"):
        schema = {"type": "string", "minLength": 1}
        if field.max_length is not None:
            schema["maxLength"] = field.max_length
        if kind == "uuid":
            schema["format"] = "uuid"
    elif kind == "number":
        schema = {"type": "number"}
    elif kind == "integer":
        schema = {"type": "integer"}
        if field.minimum is not None:
            schema["minimum"] = field.minimum
        if field.maximum is not None:
            schema["maximum"] = field.maximum
    elif kind == "boolean":
        schema = {"type": "boolean"}
    elif kind == "tags":
        schema = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": field.max_length},
                  "maxItems": field.max_items, "uniqueItems": True}
    elif kind == "object":
        schema = {"type": "object"}
    elif kind == "array":
        schema = {"type": "array"}
    elif kind == "embedding":
        schema = {"type": "array", "items": {"type": "number"}}
        if dim is not None:
            schema.update(minItems=dim, maxItems=dim)
    else:
        raise ValueError(f"unknown field kind {kind!r}")
    if field.nullable:
        schema["type"] = [schema["type"], "null"]
    if field.default is not spec.NO_DEFAULT:
        schema["default"] = field.default
    if field.max_bytes is not None:
        description = f"{description} At most {field.max_bytes} bytes once encoded as JSON."
    schema["description"] = description
    return schema


FILTER_DESCRIPTIONS = {
    "min_reward": "Only memories whose reward is at least this.",
    "tags_any": "Only memories carrying at least one of these tags.",
    "tags_all": "Only memories carrying all of these tags.",
    "task_id_prefix": "Only memories whose task_id starts with this.",
    "source": "Only memories with exactly this source.",
    "user_id": "Only memories with exactly this user_id.",
    "time_after": "Only memories whose timestamp (milliseconds since the Unix epoch) is at least this.",
    "time_before": "Only memories whose timestamp (milliseconds since the Unix epoch) is at most this.",
}


def filter_properties() -> dict[str, Any]:
    """Every filter of `POST /v1/query`, as tool arguments."""
    return {name: field_schema(field, FILTER_DESCRIPTIONS[name]) for name, field in spec.FILTER.items()}


def max_top_k() -> int:
    return settings.AGENT_MEM_MAX_TOP_K


def input_schema(properties: dict[str, Any], *, required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """An object schema that refuses unknown arguments (a typo must not be silently ignored)."""
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema
