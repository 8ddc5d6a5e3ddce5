"""Request validation for the episode API (docs/api.md §3, §4, §9). Every request field is
declared once in episodes/spec.py; the serializers here are built from it (they word every error,
naming the field, and drive the OpenAPI schema). Embeddings go through numpy
(fields.embedding_array). Store and query bodies try episodes/fastpath.py first, built from the
same spec, which hands anything it cannot accept back to these serializers."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import QueryDict
from rest_framework import serializers

from . import spec
from .fastpath import fast_episodes, fast_query
from .fields import (
    JSONSizedField,
    StrictCharField,
    StrictChoiceField,
    StrictFloatField,
    StrictIntegerField,
    TagsField,
    embedding_array,
)


class EmbeddingField(serializers.Field):
    """An embedding of the authenticated tenant's dim (from the serializer context)."""

    def to_internal_value(self, data: Any):
        tenant = self.context["tenant"]
        return embedding_array(data, dim=tenant.dim, nonzero=tenant.metric == "cosine")

    def to_representation(self, value: Any) -> list[float]:
        return [float(x) for x in value]


def _childless(field: serializers.Field) -> bool:
    return not isinstance(field, (serializers.BaseSerializer, serializers.ListField, serializers.DictField,
                                  serializers.HStoreField))


def _shallow(field: serializers.Field) -> serializers.Field:
    clone = object.__new__(type(field))
    clone.__dict__.update(field.__dict__)
    return clone


def build_field(field: spec.Field) -> serializers.Field:
    """The DRF field for a spec.Field: its limits become the field's (and the schema's)."""
    options: dict[str, Any] = {"required": field.required}
    if field.nullable:
        options["allow_null"] = True
    if field.default is not spec.NO_DEFAULT:
        options["default"] = field.default
    kind = field.kind
    if kind == "uuid":
        return serializers.UUIDField(format="hex_verbose", **options)
    if kind == "text":  # blank is refused (allow_blank is off): at least one character
        return StrictCharField(max_length=field.max_length, max_bytes=field.max_bytes, trim_whitespace=False,
                               **options)
    if kind == "choice":
        return StrictChoiceField(choices=field.choices, **options)
    if kind == "number":
        return StrictFloatField(**options)
    if kind == "integer":
        return StrictIntegerField(min_value=field.minimum, max_value=field.maximum, **options)
    if kind == "boolean":
        return serializers.BooleanField(**options)
    if kind == "tags":
        return TagsField(max_tags=field.max_items, max_length=field.max_length, **options)
    if kind == "object":
        return JSONSizedField(max_bytes=field.max_bytes, kind=dict, kind_name="a JSON object", **options)
    if kind == "array":
        return JSONSizedField(max_bytes=field.max_bytes, kind=list, kind_name="an array", **options)
    if kind == "embedding":
        return EmbeddingField(**options)
    raise ValueError(f"unknown field kind {kind!r}")


def declare(table: dict[str, spec.Field]) -> Callable[[type], type]:
    """Class decorator: the serializer's fields, built from a spec table, after any inherited ones."""

    def apply(cls: type) -> type:
        cls._declared_fields = {**cls._declared_fields, **{name: build_field(f) for name, f in table.items()}}
        return cls

    return apply


def timestamp_field(**kwargs: Any) -> StrictIntegerField:
    return StrictIntegerField(min_value=spec.TIMESTAMP.minimum, max_value=spec.TIMESTAMP.maximum, **kwargs)


class StrictSerializer(serializers.Serializer):
    """Unknown fields are a 400 naming the field: a typo like `topk` must not change results."""

    def get_fields(self) -> dict[str, serializers.Field]:
        # DRF deep-copies every declared field for each serializer instance, re-running each
        # field's __init__: about 100 µs per request for the query's dozen fields. A field without
        # children holds no state of its own until bound, so a shallow copy serves; fields with
        # children (lists, dicts, nested serializers) are deep-copied as DRF does.
        return {name: _shallow(field) if _childless(field) else copy.deepcopy(field)
                for name, field in self._declared_fields.items()}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["body must be a JSON object"]})
        unknown = [key for key in data if key not in self.fields or self.fields[key].read_only]
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["unknown field"]})
        return super().to_internal_value(data)


@declare(spec.EPISODE)
class EpisodeInput(StrictSerializer):
    def run_validation(self, data: Any = serializers.empty) -> Any:
        """The fast path when it can decide (no DRF field objects: building them per request cost
        more than the checks), else the serializer, which words any error."""
        tenant = self.context["tenant"]
        if type(data) is dict:
            fast = fast_episodes([data], dim=tenant.dim, nonzero=tenant.metric == "cosine", check=self.cross_check)
            if fast is not None:
                return fast[0]
        return super().run_validation(data)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and "id" in data and not isinstance(data["id"], str):
            raise serializers.ValidationError({"id": ["must be a UUID string"]})
        return super().to_internal_value(data)

    @staticmethod
    def cross_check(attrs: dict) -> None:
        """The rules between fields (the fast path runs them too)."""
        if attrs.get("expires_at") is not None and attrs.get("ttl_secs") is not None:
            raise serializers.ValidationError({"ttl_secs": ["give either expires_at or ttl_secs, not both"]})
        if attrs.get("state_embedding") is None and attrs.get("text") is None:
            raise serializers.ValidationError(
                {"state_embedding": ["required (or text alone, on a tenant with an embedder)"]})

    def validate(self, attrs: dict) -> dict:
        self.cross_check(attrs)
        return attrs


class PassThroughField(serializers.Field):
    """Already-parsed JSON, validated by the caller (DRF's JSONField would re-encode every item)."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class EpisodeBatchInput(StrictSerializer):
    episodes = serializers.ListField(child=PassThroughField(), allow_empty=False)

    def run_validation(self, data: Any = serializers.empty) -> Any:
        """A valid batch is checked column-wise (fastpath); any error, or anything unusual, goes
        through the serializers item by item, which name the first bad field in input order."""
        episodes = data.get("episodes") if type(data) is dict and data.keys() == {"episodes"} else None
        if type(episodes) is list and 0 < len(episodes) <= settings.AGENT_MEM_MAX_BATCH:
            tenant = self.context["tenant"]
            fast = fast_episodes(episodes, dim=tenant.dim, nonzero=tenant.metric == "cosine",
                                 check=EpisodeInput.cross_check)
            if fast is not None:
                return {"episodes": fast}
        return super().run_validation(data)

    def validate_episodes(self, value: list) -> list:
        limit = settings.AGENT_MEM_MAX_BATCH
        if len(value) > limit:
            raise serializers.ValidationError(f"at most {limit} episodes per batch (AGENT_MEM_MAX_BATCH)")
        return value

    def validate(self, attrs: dict) -> dict:
        clean, seen = [], {}
        # One serializer for every item: building one per item deep-copies its fields each time.
        one = EpisodeInput(context=self.context)
        for index, item in enumerate(attrs["episodes"]):
            try:
                episode = one.run_validation(item)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"episodes": {index: exc.detail}}) from None
            if "id" in episode:
                if episode["id"] in seen:
                    raise serializers.ValidationError(
                        {"episodes": {index: {"id": [f"duplicate of episodes[{seen[episode['id']]}].id"]}}}
                    )
                seen[episode["id"]] = index
            clean.append(episode)
        attrs["episodes"] = clean
        return attrs


@declare(spec.FILTER)
class FilterInput(StrictSerializer):
    """The query filters (docs/api.md §4), shared by query, list and delete-by-filter."""


@declare(spec.QUERY)
class QueryInput(FilterInput):
    def run_validation(self, data: Any = serializers.empty) -> Any:
        """fast_query when it can decide, else the serializer, which words any error."""
        tenant = self.context["tenant"]
        fast = fast_query(data, dim=tenant.dim, nonzero=tenant.metric == "cosine",
                          max_top_k=settings.AGENT_MEM_MAX_TOP_K, check=self.cross_check)
        return fast if fast is not None else super().run_validation(data)

    @staticmethod
    def cross_check(attrs: dict) -> None:
        """What each mode needs and takes (docs/api.md §4); the fast path runs it too. The one
        place that says which of query_embedding and query_text a mode needs."""
        mode = attrs.get("mode", "vector")
        embedding, text = attrs.get("query_embedding"), attrs.get("query_text")
        if mode != "hybrid":
            for name in ("rrf_k", "vector_weight", "keyword_weight"):
                if attrs.get(name) is not None:
                    raise serializers.ValidationError({name: [f"only for mode hybrid (mode is {mode})"]})
        if mode == "vector":
            if text is not None and embedding is not None:
                raise serializers.ValidationError(
                    {"query_text": ["mode vector takes query_embedding or query_text, not both"]})
            if embedding is None and text is None:
                raise serializers.ValidationError(
                    {"query_embedding": ["required for mode vector (or query_text, on a tenant with an embedder)"]})
            return
        if text is None:
            raise serializers.ValidationError({"query_text": [f"required for mode {mode}"]})
        if mode == "keyword" and embedding is not None:
            raise serializers.ValidationError({"query_embedding": ["not used by mode keyword"]})
        if mode == "hybrid":
            if attrs.get("vector_weight") is not None and not attrs["vector_weight"] > 0:
                raise serializers.ValidationError({"vector_weight": ["must be greater than 0"]})
            if attrs.get("keyword_weight") is not None and not attrs["keyword_weight"] >= 0:
                raise serializers.ValidationError({"keyword_weight": ["must be 0 or more"]})

    def validate(self, attrs: dict) -> dict:
        self.cross_check(attrs)
        return attrs

    def validate_top_k(self, value: int) -> int:
        if value > settings.AGENT_MEM_MAX_TOP_K:
            raise serializers.ValidationError(f"must be at most {settings.AGENT_MEM_MAX_TOP_K}")
        return value

    def validate_include_embedding(self, value: bool) -> bool:
        if not isinstance(self.initial_data.get("include_embedding", False), bool):
            raise serializers.ValidationError("must be true or false")
        return value


_INTEGER = re.compile(r"^-?[0-9]+$")
_TAG_PARAMS = ("tags_any", "tags_all")
_INT_PARAMS = ("time_after", "time_before", "limit")
_FLOAT_PARAMS = ("min_reward",)
_FREE_EMPTY = ("cursor",)  # `cursor=` means the first page


def params_to_data(params: QueryDict, fields: dict) -> dict[str, Any]:
    """Query parameters as the JSON a body would carry: `tags_any=a,b` -> ["a", "b"], numbers
    parsed (a malformed one stays a string, so the strict field names it)."""
    unknown = sorted(name for name in params if name not in fields)
    if unknown:
        raise serializers.ValidationError({", ".join(unknown): ["unknown query parameter"]})
    data: dict[str, Any] = {}
    for name, values in params.lists():
        if name in _TAG_PARAMS:
            data[name] = [tag for value in values if value for tag in value.split(",")]
            continue
        if len(values) > 1:
            raise serializers.ValidationError({name: ["given more than once"]})
        value = values[0]
        if name in _FREE_EMPTY and not value:
            continue
        if name in _INT_PARAMS and _INTEGER.match(value):
            data[name] = int(value)
        elif name in _FLOAT_PARAMS:
            try:
                data[name] = float(value)
            except ValueError:
                data[name] = value
        elif name == "include_embedding":
            if value not in ("true", "false"):
                raise serializers.ValidationError({name: ["must be true or false"]})
            data[name] = value == "true"
        else:
            data[name] = value
    return data


@declare(spec.LIST)
class EpisodeListInput(FilterInput):
    """`GET /v1/episodes` query parameters: the query filters, the page size and the cursor."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, QueryDict):
            data = params_to_data(data, self.fields)
        return super().to_internal_value(data)


@declare(spec.GET)
class EmbeddingFormatInput(serializers.Serializer):
    """`GET /v1/episodes/{id}?embedding_format=...` (other parameters are ignored, as before)."""

    @classmethod
    def from_params(cls, params: QueryDict) -> str:
        values = params.getlist("embedding_format")
        if len(values) > 1:
            raise serializers.ValidationError({"embedding_format": ["given more than once"]})
        data = cls(data={"embedding_format": values[0]} if values else {})
        data.is_valid(raise_exception=True)
        return data.validated_data["embedding_format"]


# What a PATCH can never change, and why (docs/api.md §8).
IMMUTABLE = {
    "state_embedding": "the embedding cannot change: store a new episode instead",
    "text": "the text cannot change (the embedding that goes with it cannot): store a new episode instead",
    "id": "the id cannot change",
    "timestamp": "the timestamp cannot change (it fixes the episode's place in every listing)",
}


@declare(spec.PATCH)
class EpisodePatchInput(StrictSerializer):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            for name, why in IMMUTABLE.items():
                if name in data:
                    raise serializers.ValidationError({name: [why]})
        return super().to_internal_value(data)

    def validate(self, attrs: dict) -> dict:
        if not attrs:
            raise serializers.ValidationError(f"give at least one field to change: {', '.join(self.fields)}")
        if "metadata" in attrs and "metadata_merge" in attrs:
            raise serializers.ValidationError(
                {"metadata_merge": ["give either metadata (replaces) or metadata_merge (merges), not both"]})
        return attrs


class UUIDStringField(serializers.UUIDField):
    """A UUID given as a string (DRF's field would also take an integer)."""

    def to_internal_value(self, data: Any):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class EpisodesDeleteInput(StrictSerializer):
    ids = serializers.ListField(child=UUIDStringField(format="hex_verbose"), required=False)
    filter = serializers.JSONField(required=False)

    def validate_ids(self, value: list) -> list:
        limit = settings.AGENT_MEM_MAX_BATCH
        if len(value) > limit:
            raise serializers.ValidationError(f"at most {limit} ids per request (AGENT_MEM_MAX_BATCH)")
        return value

    def validate_filter(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object of query filters")
        flt = FilterInput(data=value)
        if not flt.is_valid():
            raise serializers.ValidationError(flt.errors)
        if not any(v not in (None, [], "") for v in flt.validated_data.values()):
            raise serializers.ValidationError("an empty filter would delete every episode: use a prune")
        return flt.validated_data

    def validate(self, attrs: dict) -> dict:
        if ("ids" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError("give either ids or filter (not both)")
        return attrs


class PruneOlderThanInput(StrictSerializer):
    timestamp_cutoff_ms = timestamp_field()


class PruneKeepInput(StrictSerializer):
    n = StrictIntegerField(min_value=0, max_value=spec.MAX_INT64 - 1)


class EpisodeIdResponse(serializers.Serializer):
    id = serializers.UUIDField()


class EpisodePutResponse(serializers.Serializer):
    id = serializers.UUIDField()
    created = serializers.BooleanField(help_text="true: stored anew (201); false: replaced an episode (200)")


class EpisodeIdsResponse(serializers.Serializer):
    ids = serializers.ListField(child=serializers.UUIDField())


class RemovedResponse(serializers.Serializer):
    removed = serializers.IntegerField()


class EpisodeOutput(serializers.Serializer):
    """The shape of an episode in answers (documentation for the OpenAPI schema)."""

    id = serializers.UUIDField()
    task_id = serializers.CharField()
    state_embedding = EmbeddingField(required=False, help_text="An array of numbers, or base64 of the "
                                     "little-endian float32 bytes with embedding_format=base64.")
    reward = serializers.FloatField()
    metadata = serializers.DictField()
    timestamp = serializers.IntegerField()
    tags = serializers.ListField(child=serializers.CharField())
    source = serializers.CharField(allow_null=True)
    user_id = serializers.CharField(allow_null=True)
    steps = serializers.ListField(allow_null=True)
    expires_at = serializers.IntegerField(allow_null=True)
    text = serializers.CharField(allow_null=True)


class EpisodeListResponse(serializers.Serializer):
    episodes = EpisodeOutput(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class QueryHitOutput(EpisodeOutput):
    score = serializers.FloatField(help_text="the mode's score: similarity, BM25 or the fused RRF score")
    vector_rank = serializers.IntegerField(required=False, allow_null=True,
                                           help_text="hybrid: the episode's place in the exact vector ranking")
    keyword_rank = serializers.IntegerField(required=False, allow_null=True,
                                            help_text="hybrid: its place in the BM25 ranking (null: no query term)")


class QueryResponse(serializers.Serializer):
    episodes = QueryHitOutput(many=True)


class StatsResponse(serializers.Serializer):
    tenant = serializers.CharField()
    dim = serializers.IntegerField()
    metric = serializers.CharField()
    episodes = serializers.IntegerField()
    rate_limit = serializers.IntegerField(allow_null=True)
    max_episodes = serializers.IntegerField(allow_null=True)
    embedder = serializers.CharField(allow_null=True, help_text="The tenant's embedder spec; null: none.")
