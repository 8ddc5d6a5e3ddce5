"""The base of every /v1 view: authentication, scope check and rate limiting in one place."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core import usage
from core.errors import MemcloudError

from . import key_memo
from .authentication import ApiKeyAuthentication, presented_key
from .models import ApiKey, Scope, Tenant
from .permissions import HasScope
from .principal import Principal
from .throttling import RateState, rate_limit_hit, refusal


class TenantApi(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScope]
    required_scope: str | dict[str, str] = Scope.WRITE
    # False: the endpoint acts on the whole tenant, so a user-bound key or token is refused (403).
    allows_bound_user = True
    rate_state: RateState | None = None
    # False where the view counts its own units of work instead (an MCP tool call: docs/api.md §11).
    counts_every_request = True
    answered_query = False  # set by a view whose answer is a query that is not the /v1 query route
    # True: the view may start from a key this worker verified lately and check it in its own last
    # statement (tenants/key_memo.py); it calls confirm_key() before anything else reads or costs,
    # and on key_memo.Unconfirmed.
    checks_key_late = False
    key_check: key_memo.Verified | None = None  # set while the request's key is yet to be checked

    @property
    def tenant(self) -> Tenant:
        return self.request.user

    @property
    def principal(self) -> Principal:
        return self.request.auth

    @property
    def api_key(self) -> ApiKey | None:
        return self.request.auth.api_key

    def validated(self, serializer_class: type, data: Any = None) -> Any:
        """The request's body (or `data`) through `serializer_class`, with the tenant in its context;
        a 400 naming the first bad field otherwise."""
        serializer = serializer_class(data=self.request.data if data is None else data,
                                      context={"tenant": self.tenant})
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    @property
    def key_prefix(self) -> str | None:
        return self.request.auth.prefix if self.request.auth is not None else None

    @property
    def bound_user(self) -> str | None:
        """The end user this request is restricted to (a user-bound key or token), else None.
        Views pass it to every selector and service, which apply it (docs/api.md §2)."""
        return self.request.auth.user_id if self.request.auth is not None else None

    def perform_authentication(self, request: Request) -> None:
        """Authenticate, then count the request against the tenant's window before the scope
        check: a request refused for its scope was still an authenticated request (docs/api.md §9)."""
        usage.begin_request()
        self.key_check = self._remembered(request) if self.checks_key_late else None
        if self.key_check is not None:
            request.user, request.auth = self.key_check.tenant, self.key_check.principal
            request._request.tenant_slug = self.key_check.tenant.slug  # for the request log line
            usage.acting_user(self.key_check.principal.user_id)
            return  # nothing to count: a remembered key's tenant has no rate limit
        super().perform_authentication(request)
        self._accepted(request)

    @staticmethod
    def _remembered(request: Request) -> key_memo.Verified | None:
        try:
            return key_memo.recall(presented_key(request))
        except exceptions.AuthenticationFailed:  # refused, and audited, by the full authentication
            return None

    def _accepted(self, request: Request) -> None:
        if isinstance(request.user, Tenant):
            usage.acting_user(request.auth.user_id)
            if self.counts_every_request:
                self.count_request()

    def confirm_key(self) -> None:
        """Authenticate in full a request that started from a remembered key (checks_key_late),
        then check its scope again: the remembered principal is replaced by the database's."""
        if self.key_check is None:
            return
        key_memo.forget(self.key_check.principal.prefix)
        self.key_check = None
        request = self.request
        accepted = ApiKeyAuthentication().authenticate(request)
        if accepted is None:  # cannot be: a key was presented to be remembered
            raise exceptions.NotAuthenticated()
        request.user, request.auth = accepted
        self._accepted(request)
        self.check_permissions(request)

    def handle_exception(self, exc: Exception) -> Response:
        # Nothing is answered from an unchecked key: a revoked key's request is a 401, whatever else
        # was wrong with it, as when the key is checked first.
        if self.key_check is not None:
            try:
                self.confirm_key()
            except (exceptions.APIException, MemcloudError) as refused:
                exc = refused
        return super().handle_exception(exc)

    def count_request(self) -> None:
        """Count one unit of work against the tenant's window; RateLimited (429) past the limit."""
        self.rate_state = rate_limit_hit(tenant=self.request.user)
        if self.rate_state is not None and not self.rate_state.allowed:
            raise refusal(self.rate_state)

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
                query=response.status_code == 200 and (
                    self.answered_query or (match is not None and match.url_name == "query")),
            )
        return response
