"""JSON answers for the few refusals Django makes outside DRF: a wrong method on a plain view and a
failed CSRF check (docs/api.md §4: never an HTML page)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse

from .errors import error_response


def json_get_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Like `require_GET` (GET and HEAD), but the 405 is JSON with an Allow header; CSRF-exempt, so a
    PUT gets that 405 rather than a CSRF refusal (these views change nothing)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return error_response(405, f"method {request.method} not allowed: use GET", {"Allow": "GET, HEAD"})
        return view(request, *args, **kwargs)

    wrapper.csrf_exempt = True  # what django.views.decorators.csrf.csrf_exempt sets
    return wrapper


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return error_response(403, f"forbidden: {reason or 'CSRF check failed'}")
