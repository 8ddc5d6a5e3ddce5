"""Request validation for the episode API (SPEC sections 3, 4, 9). Small fields go through DRF
serializers; embeddings through numpy (fields.embedding_array)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from .fields import (
    MAX_INT64,
    JSONSizedField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    TagsField,
    embedding_array,
)

MAX_METADATA_BYTES = 64 * 1024
MAX_STEPS_BYTES = 1024 * 1024


class EmbeddingField(serializers.Field):
    """An embedding of the authenticated tenant's dim (from the serializer context)."""

    def to_internal_value(self, data: Any):
        tenant = self.context["tenant"]
        return embedding_array(data, dim=tenant.dim, nonzero=tenant.metric == "cosine")

    def to_representation(self, value: Any) -> list[float]:
        return [float(x) for x in value]


def timestamp_field(**kwargs: Any) -> StrictIntegerField:
    return StrictIntegerField(min_value=0, max_value=MAX_INT64 - 1, **kwargs)


class StrictSerializer(serializers.Serializer):
    """Unknown fields are a 400 naming the field: a typo like `topk` must not change results."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["body must be a JSON object"]})
        unknown = [key for key in data if key not in self.fields or self.fields[key].read_only]
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["unknown field"]})
        return super().to_internal_value(data)


class EpisodeInput(StrictSerializer):
    id = serializers.UUIDField(required=False, format="hex_verbose")
    task_id = StrictCharField(min_length=1, max_length=512, trim_whitespace=False)
    state_embedding = EmbeddingField()
    reward = StrictFloatField()
    metadata = JSONSizedField(required=False, max_bytes=MAX_METADATA_BYTES, kind=dict, kind_name="a JSON object")
    timestamp = timestamp_field(required=False)
    tags = TagsField(required=False)
    source = StrictCharField(required=False, allow_null=True, max_length=256, trim_whitespace=False)
    user_id = StrictCharField(required=False, allow_null=True, max_length=256, trim_whitespace=False)
    steps = JSONSizedField(required=False, allow_null=True, max_bytes=MAX_STEPS_BYTES, kind=list,
                           kind_name="an array")
    expires_at = timestamp_field(required=False, allow_null=True)
    ttl_secs = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=100 * 365 * 86400)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and "id" in data and not isinstance(data["id"], str):
            raise serializers.ValidationError({"id": ["must be a UUID string"]})
        return super().to_internal_value(data)

    def validate(self, attrs: dict) -> dict:
        if attrs.get("expires_at") is not None and attrs.get("ttl_secs") is not None:
            raise serializers.ValidationError({"ttl_secs": ["give either expires_at or ttl_secs, not both"]})
        return attrs


class PassThroughField(serializers.Field):
    """Already-parsed JSON, validated by the caller (DRF's JSONField would re-encode every item)."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class EpisodeBatchInput(StrictSerializer):
    episodes = serializers.ListField(child=PassThroughField(), allow_empty=False)

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


class FilterInput(StrictSerializer):
    """The query filters (SPEC section 4), shared by query, list and delete-by-filter."""

    min_reward = StrictFloatField(required=False, allow_null=True)
    tags_any = TagsField(required=False, max_tags=1000)
    tags_all = TagsField(required=False, max_tags=1000)
    task_id_prefix = StrictCharField(required=False, allow_null=True, max_length=512, trim_whitespace=False)
    source = StrictCharField(required=False, allow_null=True, max_length=256, trim_whitespace=False)
    user_id = StrictCharField(required=False, allow_null=True, max_length=256, trim_whitespace=False)
    time_after = timestamp_field(required=False, allow_null=True)
    time_before = timestamp_field(required=False, allow_null=True)


class QueryInput(FilterInput):
    query_embedding = EmbeddingField()
    top_k = StrictIntegerField(required=False, default=5, min_value=1)
    include_embedding = serializers.BooleanField(required=False, default=False)

    def validate_top_k(self, value: int) -> int:
        if value > settings.AGENT_MEM_MAX_TOP_K:
            raise serializers.ValidationError(f"must be at most {settings.AGENT_MEM_MAX_TOP_K}")
        return value

    def validate_include_embedding(self, value: bool) -> bool:
        if not isinstance(self.initial_data.get("include_embedding", False), bool):
            raise serializers.ValidationError("must be true or false")
        return value


class PruneOlderThanInput(StrictSerializer):
    timestamp_cutoff_ms = timestamp_field()


class PruneKeepInput(StrictSerializer):
    n = StrictIntegerField(min_value=0, max_value=MAX_INT64 - 1)


class EpisodeIdResponse(serializers.Serializer):
    id = serializers.UUIDField()


class EpisodeIdsResponse(serializers.Serializer):
    ids = serializers.ListField(child=serializers.UUIDField())


class RemovedResponse(serializers.Serializer):
    removed = serializers.IntegerField()


class EpisodeOutput(serializers.Serializer):
    """The shape of an episode in answers (documentation for the OpenAPI schema)."""

    id = serializers.UUIDField()
    task_id = serializers.CharField()
    state_embedding = serializers.ListField(child=serializers.FloatField(), required=False)
    reward = serializers.FloatField()
    metadata = serializers.DictField()
    timestamp = serializers.IntegerField()
    tags = serializers.ListField(child=serializers.CharField())
    source = serializers.CharField(allow_null=True)
    user_id = serializers.CharField(allow_null=True)
    steps = serializers.ListField(allow_null=True)
    expires_at = serializers.IntegerField(allow_null=True)


class QueryHitOutput(EpisodeOutput):
    score = serializers.FloatField()


class QueryResponse(serializers.Serializer):
    episodes = QueryHitOutput(many=True)


class StatsResponse(serializers.Serializer):
    tenant = serializers.CharField()
    dim = serializers.IntegerField()
    metric = serializers.CharField()
    episodes = serializers.IntegerField()
    rate_limit = serializers.IntegerField(allow_null=True)
    max_episodes = serializers.IntegerField(allow_null=True)
