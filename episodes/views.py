"""The /v1 episode endpoints: validate, call one service or selector, answer (HackSoft style)."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from memcloud.errors import NotFound
from tenants.api import TenantApi
from tenants.models import Scope

from . import selectors, services
from .index import Filters
from .serializers import (
    EpisodeBatchInput,
    EpisodeIdResponse,
    EpisodeIdsResponse,
    EpisodeInput,
    EpisodeOutput,
    PruneKeepInput,
    PruneOlderThanInput,
    QueryInput,
    QueryResponse,
    RemovedResponse,
    StatsResponse,
)


def parse_episode_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"episode {raw!r} not found") from None


def filters_from(data: dict) -> Filters:
    return Filters(
        min_reward=data.get("min_reward"),
        tags_any=tuple(data.get("tags_any") or ()),
        tags_all=tuple(data.get("tags_all") or ()),
        task_id_prefix=data.get("task_id_prefix") or None,
        source=data.get("source"),
        user_id=data.get("user_id"),
        time_after=data.get("time_after"),
        time_before=data.get("time_before"),
    )


class EpisodeCollectionApi(TenantApi):
    required_scope = {"POST": Scope.WRITE, "GET": Scope.READ}

    @extend_schema(request=EpisodeInput, responses={201: EpisodeIdResponse, 200: EpisodeIdResponse})
    def post(self, request: Request) -> Response:
        data = EpisodeInput(data=request.data, context={"tenant": self.tenant})
        data.is_valid(raise_exception=True)
        result = services.episodes_store(tenant=self.tenant, episodes=[data.validated_data],
                                         key_prefix=self.key_prefix)
        return Response({"id": str(result.ids[0])}, status=201 if result.any_created else 200)


class EpisodeBatchCreateApi(TenantApi):
    required_scope = Scope.WRITE

    @extend_schema(request=EpisodeBatchInput, responses={201: EpisodeIdsResponse, 200: EpisodeIdsResponse})
    def post(self, request: Request) -> Response:
        data = EpisodeBatchInput(data=request.data, context={"tenant": self.tenant})
        data.is_valid(raise_exception=True)
        result = services.episodes_store(tenant=self.tenant, episodes=data.validated_data["episodes"],
                                         key_prefix=self.key_prefix)
        return Response({"ids": [str(i) for i in result.ids]}, status=201 if result.any_created else 200)


class EpisodeDetailApi(TenantApi):
    required_scope = {"GET": Scope.READ, "DELETE": Scope.WRITE, "PATCH": Scope.WRITE}

    @extend_schema(responses={200: EpisodeOutput})
    def get(self, request: Request, episode_id: str) -> Response:
        return Response(selectors.episode_get(tenant=self.tenant, episode_id=parse_episode_id(episode_id)))

    @extend_schema(responses={200: RemovedResponse})
    def delete(self, request: Request, episode_id: str) -> Response:
        removed = services.episode_delete(tenant=self.tenant, episode_id=parse_episode_id(episode_id),
                                          key_prefix=self.key_prefix)
        if not removed:
            raise NotFound(f"episode {episode_id} not found")
        return Response({"removed": removed})


class EpisodeQueryApi(TenantApi):
    required_scope = Scope.READ

    @extend_schema(request=QueryInput, responses={200: QueryResponse})
    def post(self, request: Request) -> Response:
        data = QueryInput(data=request.data, context={"tenant": self.tenant})
        data.is_valid(raise_exception=True)
        v = data.validated_data
        hits = selectors.episodes_query(
            tenant=self.tenant, state=self.tenant.state, query_embedding=v["query_embedding"],
            top_k=v["top_k"], filters=filters_from(v), include_embedding=v["include_embedding"],
            key_prefix=self.key_prefix,
        )
        return Response({"episodes": hits})


class PruneOlderThanApi(TenantApi):
    required_scope = Scope.WRITE

    @extend_schema(request=PruneOlderThanInput, responses={200: RemovedResponse})
    def post(self, request: Request) -> Response:
        data = PruneOlderThanInput(data=request.data)
        data.is_valid(raise_exception=True)
        removed = services.episodes_prune_older_than(
            tenant=self.tenant, cutoff_ms=data.validated_data["timestamp_cutoff_ms"], key_prefix=self.key_prefix)
        return Response({"removed": removed})


class _PruneKeepApi(TenantApi):
    """Keep the best `n` by the subclass's order, remove the rest."""

    required_scope = Scope.WRITE
    prune = staticmethod(services.episodes_prune_keep_newest)

    @extend_schema(request=PruneKeepInput, responses={200: RemovedResponse})
    def post(self, request: Request) -> Response:
        data = PruneKeepInput(data=request.data)
        data.is_valid(raise_exception=True)
        removed = self.prune(tenant=self.tenant, n=data.validated_data["n"], key_prefix=self.key_prefix)
        return Response({"removed": removed})


class PruneKeepNewestApi(_PruneKeepApi):
    prune = staticmethod(services.episodes_prune_keep_newest)


class PruneKeepHighestRewardApi(_PruneKeepApi):
    prune = staticmethod(services.episodes_prune_keep_highest_reward)


class StatsApi(TenantApi):
    required_scope = Scope.READ

    @extend_schema(responses={200: StatsResponse})
    def get(self, request: Request) -> Response:
        return Response(selectors.tenant_stats(tenant=self.tenant))
