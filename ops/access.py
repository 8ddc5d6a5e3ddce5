"""Who may read the operational pages: /metrics (scrapers) and /dashboard (staff), docs/operations.md."""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


def _token_matches(presented: str, expected: str) -> bool:
    # Digests first: equal lengths, so the comparison's time says nothing about the token's length.
    return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest())


def _bearer(request: HttpRequest) -> str | None:
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _source_allowed(request: HttpRequest) -> bool:
    """REMOTE_ADDR only: the direct peer (a scraper reaches the pod itself, not through the ingress)."""
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in settings.AGENT_MEM_METRICS_ALLOW)


def metrics_access_denied(request: HttpRequest) -> JsonResponse | None:
    """None when the scrape may proceed, else the 403 to answer."""
    token = settings.AGENT_MEM_METRICS_TOKEN
    presented = _bearer(request)
    if token and presented is not None and _token_matches(presented, token):
        return None
    if _source_allowed(request):
        return None
    return JsonResponse(
        {"error": "forbidden: /metrics needs the scrape token (Authorization: Bearer) or an allowed source network"},
        status=403,
    )


def is_staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def scrapers_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wraps the /metrics view (in memcloud/urls.py, so the view itself needs no import from ops)."""

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if (denied := metrics_access_denied(request)) is not None:
            return denied
        return view(request, *args, **kwargs)

    return guarded
