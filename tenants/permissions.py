"""Authorisation: a tenant key must be present and hold the scope the endpoint needs (docs/api.md §2, §8)."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from core.errors import Forbidden

from .models import SCOPE_RANK, Scope, Tenant


class HasScope(BasePermission):
    def has_permission(self, request, view) -> bool:
        if not isinstance(request.user, Tenant):
            raise exceptions.NotAuthenticated("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
        needed = getattr(view, "required_scope", Scope.ADMIN)
        if isinstance(needed, dict):  # per method, e.g. {"GET": "read", "POST": "write"}
            # HEAD is a GET without the body: the same scope.
            needed = needed.get("GET" if request.method == "HEAD" else request.method, Scope.ADMIN)
        if request.auth.user_id is not None and (needed == Scope.ADMIN or not getattr(view, "allows_bound_user", True)):
            raise exceptions.PermissionDenied(
                "this endpoint acts on the whole tenant: a user-bound key or token cannot use it")
        if SCOPE_RANK[request.auth.scope] < SCOPE_RANK[needed]:
            raise Forbidden(f"this API key lacks the '{needed}' scope this endpoint needs")
        return True
