"""Request-level middleware: the body size guard and one structured log line per request."""

from __future__ import annotations

import io
import logging
import re
import time
import uuid
from collections.abc import Callable

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from core.errors import InvalidInput, PayloadTooLarge, exception_response

request_logger = logging.getLogger("memcloud.request")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class BodySizeLimitMiddleware:
    """413 on a declared Content-Length over the limit, before any of the body is read; a chunked
    body (no Content-Length) is read up to the limit and no further."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.AGENT_MEM_MAX_BODY_BYTES
        raw = request.META.get("CONTENT_LENGTH") or ""
        if not raw and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            return self._chunked(request, limit)
        try:
            length = int(raw or "0")
        except ValueError:
            return exception_response(InvalidInput("Content-Length header is not a number"))
        if length > limit:
            return self._too_large(limit)
        return self.get_response(request)

    def _chunked(self, request: HttpRequest, limit: int) -> HttpResponse:
        """A chunked body has no Content-Length, so Django would read it as empty: read at most
        limit + 1 bytes of it here, answer 413 past the limit, else hand the view the bytes read."""
        stream = request.environ["wsgi.input"]
        parts, size = [], 0
        while size <= limit:
            part = stream.read(min(65536, limit + 1 - size))
            if not part:
                break
            parts.append(part)
            size += len(part)
        if size > limit:
            return self._too_large(limit)
        body = b"".join(parts)
        request.META["CONTENT_LENGTH"] = str(len(body))
        request._stream = io.BytesIO(body)  # what HttpRequest.read() and .body read from
        return self.get_response(request)

    @staticmethod
    def _too_large(limit: int) -> HttpResponse:
        return exception_response(PayloadTooLarge(f"request body is too large (limit {limit} bytes)"))


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
    """An exception that escapes a view outside DRF answers from the one table in core.errors, as
    a DRF view's would: JSON, never a debug page (Django's own answers to Http404, PermissionDenied
    and SuspiciousOperation are HTML pages with DEBUG on)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse:
        return exception_response(exception)
