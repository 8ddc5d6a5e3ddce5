"""The /v1 episode endpoints: validate, call one service or selector, answer (HackSoft style)."""

from __future__ import annotations

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import InvalidInput, NotFound
from memindex.columns import Filters
from tenants import key_memo
from tenants.api import TenantApi
from tenants.models import Scope

from . import selectors, services, spec
from .serializers import (
    EmbeddingFormatInput,
    EpisodeBatchInput,
    EpisodeIdResponse,
    EpisodeIdsResponse,
    EpisodeInput,
    EpisodeListInput,
    EpisodeListResponse,
    EpisodeOutput,
    EpisodePatchInput,
    EpisodePutResponse,
    EpisodesDeleteInput,
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


def _param(name: str, kind, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, required=False, description=description)


EMBEDDING_FORMAT_PARAMETER = _param(
    "embedding_format", OpenApiTypes.STR,
    "float (default): state_embedding as numbers; base64: as base64 of its little-endian float32 bytes")
LIST_PARAMETERS = [
    _param("limit", OpenApiTypes.INT, "episodes per page, 1 to 1000 (default 100)"),
    _param("cursor", OpenApiTypes.STR, "next_cursor of the previous page (same filters)"),
    _param("include_embedding", OpenApiTypes.BOOL, "true: each episode carries state_embedding"),
    EMBEDDING_FORMAT_PARAMETER,
    _param("min_reward", OpenApiTypes.DOUBLE, "reward >= min_reward"),
    _param("tags_any", OpenApiTypes.STR, "comma-separated: at least one of these tags"),
    _param("tags_all", OpenApiTypes.STR, "comma-separated: all of these tags"),
    _param("task_id_prefix", OpenApiTypes.STR, "task_id starts with this"),
    _param("source", OpenApiTypes.STR, "exact source"),
    _param("user_id", OpenApiTypes.STR, "exact user_id"),
    _param("time_after", OpenApiTypes.INT64, "timestamp >= time_after (ms)"),
    _param("time_before", OpenApiTypes.INT64, "timestamp <= time_before (ms)"),
]


class EpisodeCollectionApi(TenantApi):
    required_scope = {"POST": Scope.WRITE, "GET": Scope.READ}

    @extend_schema(operation_id="v1_episodes_list", parameters=LIST_PARAMETERS,
                   responses={200: EpisodeListResponse})
    def get(self, request: Request) -> Response:
        v = self.validated(EpisodeListInput, request.query_params)
        page = selectors.episodes_list(tenant=self.tenant, filters=filters_from(v), limit=v["limit"],
                                       cursor=v.get("cursor"), include_embedding=v["include_embedding"],
                                       user=self.bound_user, embedding_format=v["embedding_format"])
        return Response(page)

    @extend_schema(request=EpisodeInput, responses={201: EpisodeIdResponse, 200: EpisodeIdResponse})
    def post(self, request: Request) -> Response:
        result = services.episodes_store(tenant=self.tenant, episodes=[self.validated(EpisodeInput)],
                                         key_prefix=self.key_prefix, user=self.bound_user)
        return Response({"id": str(result.ids[0])}, status=201 if result.any_created else 200)


class EpisodeBatchCreateApi(TenantApi):
    required_scope = Scope.WRITE

    @extend_schema(request=EpisodeBatchInput, responses={201: EpisodeIdsResponse, 200: EpisodeIdsResponse})
    def post(self, request: Request) -> Response:
        result = services.episodes_store(tenant=self.tenant, episodes=self.validated(EpisodeBatchInput)["episodes"],
                                         key_prefix=self.key_prefix, user=self.bound_user)
        return Response({"ids": [str(i) for i in result.ids]}, status=201 if result.any_created else 200)


class EpisodeDetailApi(TenantApi):
    required_scope = {"GET": Scope.READ, "DELETE": Scope.WRITE, "PATCH": Scope.WRITE, "PUT": Scope.WRITE}

    @extend_schema(parameters=[EMBEDDING_FORMAT_PARAMETER], responses={200: EpisodeOutput})
    def get(self, request: Request, episode_id: str) -> Response:
        embedding_format = EmbeddingFormatInput.from_params(request.query_params)
        return Response(selectors.episode_get(tenant=self.tenant, episode_id=parse_episode_id(episode_id),
                                              user=self.bound_user, embedding_format=embedding_format))

    @extend_schema(request=EpisodeInput, responses={201: EpisodePutResponse, 200: EpisodePutResponse})
    def put(self, request: Request, episode_id: str) -> Response:
        """Create or replace the whole episode under this id, atomically: a concurrent reader sees the
        old episode or the new one, never neither."""
        eid = parse_episode_id(episode_id)
        episode = self.validated(EpisodeInput)
        if episode.get("id", eid) != eid:
            raise InvalidInput("id: must be the id in the path, or absent")
        created = services.episode_put(tenant=self.tenant, episode_id=eid, episode=episode,
                                       key_prefix=self.key_prefix, user=self.bound_user)
        return Response({"id": str(eid), "created": created}, status=201 if created else 200)

    @extend_schema(request=EpisodePatchInput, responses={200: EpisodeOutput})
    def patch(self, request: Request, episode_id: str) -> Response:
        row = services.episode_update(tenant=self.tenant, episode_id=parse_episode_id(episode_id),
                                      changes=self.validated(EpisodePatchInput), key_prefix=self.key_prefix,
                                      user=self.bound_user)
        return Response(selectors.episode_json(
            {name: getattr(row, name) for name in selectors.OUTPUT_FIELDS}, embedding=row.embedding))

    @extend_schema(responses={200: RemovedResponse})
    def delete(self, request: Request, episode_id: str) -> Response:
        removed = services.episode_delete(tenant=self.tenant, episode_id=parse_episode_id(episode_id),
                                          key_prefix=self.key_prefix, user=self.bound_user)
        if not removed:
            raise NotFound(f"episode {episode_id} not found")
        return Response({"removed": removed})


class EpisodesDeleteApi(TenantApi):
    required_scope = Scope.WRITE

    @extend_schema(request=EpisodesDeleteInput, responses={200: RemovedResponse})
    def post(self, request: Request) -> Response:
        v = self.validated(EpisodesDeleteInput)
        removed = services.episodes_delete(
            tenant=self.tenant, ids=v.get("ids"), filters=filters_from(v["filter"]) if "filter" in v else None,
            key_prefix=self.key_prefix, user=self.bound_user)
        return Response({"removed": removed})


class EpisodeQueryApi(TenantApi):
    required_scope = Scope.READ
    checks_key_late = True  # the hottest endpoint: its key is checked in the winners' statement

    @extend_schema(request=QueryInput, responses={200: QueryResponse})
    def post(self, request: Request) -> Response:
        try:
            return self._answer()
        except key_memo.Unconfirmed:
            self.confirm_key()
            return self._answer()  # validated again: for the tenant as the database has it now

    def _answer(self) -> Response:
        v = self.validated(QueryInput)
        ranking = selectors.Ranking(
            mode=v["mode"], query_embedding=v.get("query_embedding"), query_text=v.get("query_text"),
            rrf_k=v.get("rrf_k") or spec.DEFAULT_RRF_K,
            vector_weight=1.0 if v.get("vector_weight") is None else v["vector_weight"],
            keyword_weight=1.0 if v.get("keyword_weight") is None else v["keyword_weight"])
        if ranking.needs_embedder:
            self.confirm_key()  # no call to the tenant's embedder (a provider's bill) on an unchecked key
        hits = selectors.episodes_query(
            tenant=self.tenant, state=None if self.key_check else self.tenant.state, top_k=v["top_k"],
            filters=filters_from(v), include_embedding=v["include_embedding"], key_prefix=self.key_prefix,
            ranking=ranking, user=self.bound_user, embedding_format=v["embedding_format"],
            key_check=self.key_check,
        )
        return Response({"episodes": hits})


class PruneOlderThanApi(TenantApi):
    required_scope = Scope.WRITE

    @extend_schema(request=PruneOlderThanInput, responses={200: RemovedResponse})
    def post(self, request: Request) -> Response:
        data = self.validated(PruneOlderThanInput)
        removed = services.episodes_prune_older_than(
            tenant=self.tenant, cutoff_ms=data["timestamp_cutoff_ms"], key_prefix=self.key_prefix,
            user=self.bound_user)
        return Response({"removed": removed})


class _PruneKeepApi(TenantApi):
    """Keep the best `n` by the subclass's order, remove the rest."""

    required_scope = Scope.WRITE
    prune = staticmethod(services.episodes_prune_keep_newest)

    @extend_schema(request=PruneKeepInput, responses={200: RemovedResponse})
    def post(self, request: Request) -> Response:
        data = self.validated(PruneKeepInput)
        removed = self.prune(tenant=self.tenant, n=data["n"], key_prefix=self.key_prefix,
                             user=self.bound_user)
        return Response({"removed": removed})


class PruneKeepNewestApi(_PruneKeepApi):
    prune = staticmethod(services.episodes_prune_keep_newest)


class PruneKeepHighestRewardApi(_PruneKeepApi):
    prune = staticmethod(services.episodes_prune_keep_highest_reward)


class StatsApi(TenantApi):
    required_scope = Scope.READ

    @extend_schema(responses={200: StatsResponse})
    def get(self, request: Request) -> Response:
        return Response(selectors.tenant_stats(tenant=self.tenant, user=self.bound_user))
