"""Request metrics: every /v1 request counted whatever its status, latency by route name."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from . import metrics

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class MetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        endpoint = (match.url_name if match is not None else None) or "unmatched"
        status = response.status_code
        metrics.LATENCY.labels(endpoint=endpoint, method=request.method if request.method in METHODS else "other", status=str(status)).observe(
            time.perf_counter() - started)
        if request.path.startswith("/v1/"):
            metrics.REQUESTS.inc()
            if endpoint == "query" and status == 200:
                metrics.QUERIES.inc()
            metrics.refresh_cache_gauges()
        return response
