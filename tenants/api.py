"""The base of every /v1 view: authentication, scope check and rate limiting in one place."""

from __future__ import annotations

from rest_framework.views import APIView

from .authentication import ApiKeyAuthentication
from .models import ApiKey, Scope, Tenant
from .permissions import HasScope


class TenantApi(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScope]
    required_scope: str | dict[str, str] = Scope.WRITE

    @property
    def tenant(self) -> Tenant:
        return self.request.user

    @property
    def api_key(self) -> ApiKey:
        return self.request.auth

    @property
    def key_prefix(self) -> str | None:
        return self.request.auth.prefix if self.request.auth is not None else None
