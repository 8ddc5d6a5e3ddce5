"""Liveness and readiness."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.errors import DATABASE_RETRY
from core.http import json_get_only

logger = logging.getLogger("memcloud.ops")


@json_get_only
def health(request: HttpRequest) -> HttpResponse:
    """Liveness: touches nothing, so a database outage does not get the pod restarted."""
    return HttpResponse("ok", content_type="text/plain")


@json_get_only
def ready(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any database failure means: not ready
        logger.warning("not ready: %s", exc)
        # Its own body (a probe's status), but the Retry-After of every database outage's 503.
        return JsonResponse({"status": "unavailable", "error": "database unavailable"}, status=503,
                            headers=DATABASE_RETRY)
    return JsonResponse({"status": "ok"})
