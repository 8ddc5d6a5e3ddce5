"""Liveness and readiness."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger("memcloud.ops")


@require_GET
def health(request: HttpRequest) -> HttpResponse:
    """Liveness: touches nothing, so a database outage does not get the pod restarted."""
    return HttpResponse("ok", content_type="text/plain")


@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any database failure means: not ready
        logger.warning("not ready: %s", exc)
        return JsonResponse({"status": "unavailable", "error": "database unavailable"}, status=503)
    return JsonResponse({"status": "ok"})
