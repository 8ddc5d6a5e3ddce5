"""The /v1 save, load, snapshot list and checkpoint endpoints (docs/api.md §4 and §8)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from tenants.api import TenantApi
from tenants.models import Scope

from . import snapshot_services as services
from .fields import StrictCharField
from .serializers import StrictSerializer
from .snapshots import validate_name


class SnapshotPathInput(StrictSerializer):
    path = StrictCharField(max_length=1000, trim_whitespace=False)

    def validate_path(self, value: str) -> str:
        return validate_name(value)


class CheckpointInput(StrictSerializer):
    """No fields: `{}` (anything else is an unknown field)."""


class SaveResponse(serializers.Serializer):
    ok = serializers.BooleanField()
    path = serializers.CharField()
    episodes = serializers.IntegerField()


class LoadResponse(serializers.Serializer):
    ok = serializers.BooleanField()
    episodes = serializers.IntegerField()


class SnapshotOutput(serializers.Serializer):
    path = serializers.CharField()
    episodes = serializers.IntegerField(allow_null=True)
    bytes = serializers.IntegerField()
    created = serializers.CharField(allow_null=True)


class SnapshotListResponse(serializers.Serializer):
    snapshots = SnapshotOutput(many=True)


class SnapshotSaveApi(TenantApi):
    allows_bound_user = False  # acts on the whole tenant
    required_scope = Scope.ADMIN

    @extend_schema(request=SnapshotPathInput, responses={200: SaveResponse})
    def post(self, request: Request) -> Response:
        name = self.validated(SnapshotPathInput)["path"]
        count = services.snapshot_save(tenant=self.tenant, name=name, key_prefix=self.key_prefix)
        return Response({"ok": True, "path": name, "episodes": count})


class SnapshotLoadApi(TenantApi):
    allows_bound_user = False  # acts on the whole tenant
    required_scope = Scope.ADMIN

    @extend_schema(request=SnapshotPathInput, responses={200: LoadResponse})
    def post(self, request: Request) -> Response:
        count = services.snapshot_load(tenant=self.tenant, name=self.validated(SnapshotPathInput)["path"],
                                       key_prefix=self.key_prefix)
        return Response({"ok": True, "episodes": count})


class SnapshotListApi(TenantApi):
    allows_bound_user = False  # acts on the whole tenant
    required_scope = Scope.READ

    @extend_schema(responses={200: SnapshotListResponse})
    def get(self, request: Request) -> Response:
        return Response({"snapshots": services.snapshots_list(tenant=self.tenant)})


class CheckpointApi(TenantApi):
    allows_bound_user = False  # acts on the whole tenant
    required_scope = Scope.ADMIN

    @extend_schema(request=CheckpointInput, responses={200: LoadResponse})
    def post(self, request: Request) -> Response:
        self.validated(CheckpointInput)
        count = services.tenant_checkpoint(tenant=self.tenant, state=self.tenant.state, key_prefix=self.key_prefix)
        return Response({"ok": True, "episodes": count})
