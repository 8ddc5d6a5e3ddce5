"""The base of every /v1 view: authentication, scope check and rate limiting in one place."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from memcloud.errors import MemcloudError
from ops import usage

from . import key_memo
from .authentication import ApiKeyAuthentication, remembered_key
from .models import ApiKey, Scope, Tenant
from .permissions import HasScope
from .throttling import RateState, rate_limit_hit, refusal


class TenantApi(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScope]
    required_scope: str | dict[str, str] = Scope.WRITE
    rate_state: RateState | None = None
    # True: the view may start from a key this worker verified lately and check it in its own last
    # statement (tenants/key_memo.py); it then calls confirm_key() on key_memo.Unconfirmed.
    checks_key_late = False
    key_check: key_memo.Verified | None = None  # set while the request's key is yet to be checked

    @property
    def tenant(self) -> Tenant:
        return self.request.user

    @property
    def api_key(self) -> ApiKey:
        return self.request.auth

    @property
    def key_prefix(self) -> str | None:
        return self.request.auth.prefix if self.request.auth is not None else None

    def perform_authentication(self, request: Request) -> None:
        """Authenticate, then count the request against the tenant's window before the scope
        check: a request refused for its scope was still an authenticated request (SPEC section 9)."""
        usage.begin_request()
        self.key_check = remembered_key(request) if self.checks_key_late else None
        if self.key_check is not None:
            request.user, request.auth = self.key_check.tenant, self.key_check.api_key
            request._request.tenant_slug = self.key_check.tenant.slug  # for the request log line
            return
        self._authenticate_and_count(request)

    def _authenticate_and_count(self, request: Request) -> None:
        """DRF's authentication (unless it has run), then the request counted against the window."""
        super().perform_authentication(request)
        if isinstance(request.user, Tenant):
            self.rate_state = rate_limit_hit(tenant=request.user)
            if self.rate_state is not None and not self.rate_state.allowed:
                raise refusal(self.rate_state)

    def confirm_key(self) -> None:
        """Authenticate in full a request that started from a remembered key (checks_key_late)."""
        if self.key_check is None:
            return
        key_memo.forget(self.key_check.api_key.prefix)
        self.key_check = None
        self.request._authenticate()  # DRF's own, again: the remembered user and auth are replaced
        self._authenticate_and_count(self.request)

    def handle_exception(self, exc: Exception) -> Response:
        # Nothing is answered from an unchecked key: a revoked key's request is a 401, whatever else
        # was wrong with it, as when the key is checked first.
        if self.key_check is not None:
            try:
                self.confirm_key()
            except (exceptions.APIException, MemcloudError) as refused:
                exc = refused
        return super().handle_exception(exc)

    def finalize_response(self, request: Request, response: Response, *args, **kwargs) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if self.rate_state is not None:
            for name, value in self.rate_state.headers().items():
                response[name] = value
        user = getattr(request, "_user", None)  # set only once authentication has run
        if isinstance(user, Tenant):
            match = request._request.resolver_match
            usage.answered(
                tenant_id=user.pk,
                query=response.status_code == 200 and match is not None and match.url_name == "query",
            )
        return response
