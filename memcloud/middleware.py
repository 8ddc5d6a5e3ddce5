"""Request-level middleware: the body size guard and one structured log line per request."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

request_logger = logging.getLogger("memcloud.request")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class BodySizeLimitMiddleware:
    """413 on a declared Content-Length over the limit, before any of the body is read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return JsonResponse({"error": "Content-Length header is not a number"}, status=400)
        if length > settings.AGENT_MEM_MAX_BODY_BYTES:
            return JsonResponse(
                {"error": f"request body is too large (limit {settings.AGENT_MEM_MAX_BODY_BYTES} bytes)"},
                status=413,
            )
        return self.get_response(request)


class RequestLogMiddleware:
    """One JSON log line per request; echoes or generates X-Request-ID."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request.request_id = request_id
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        tenant = getattr(request, "tenant_slug", None)
        request_logger.info(
            orjson.dumps(
                {
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    "tenant": tenant,
                    "request_id": request_id,
                }
            ).decode()
        )
        return response


class JsonExceptionMiddleware:
    """An exception that escapes a view outside DRF answers JSON 500, never a debug page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse:
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"error": "request body is too large"}, status=413)
        if isinstance(exception, (OperationalError, InterfaceError)):
            request_logger.warning("database unavailable: %s", exception)
            return JsonResponse({"error": "database unavailable, retry later"}, status=503)
        request_logger.exception("unhandled error on %s", request.path)
        return JsonResponse({"error": "internal server error"}, status=500)
