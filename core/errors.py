"""Domain errors and the one handler that turns every failure into {"error": "..."}."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger("core.errors")


class MemcloudError(Exception):
    status = 400
    headers: dict[str, str] | None = None  # extra response headers, e.g. Retry-After on a 503


class InvalidInput(MemcloudError):
    status = 400


class NotFound(MemcloudError):
    status = 404


class Conflict(MemcloudError):
    status = 409


class Forbidden(MemcloudError):
    status = 403


class QuotaExceeded(MemcloudError):
    status = 403


class PayloadTooLarge(MemcloudError):
    status = 413


class Unavailable(MemcloudError):
    status = 503


def first_message(detail: Any, path: str = "") -> str:
    """Flatten DRF's nested error detail into one message that names the field."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key in ("non_field_errors", "detail"):
                return first_message(value, path)
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
                sub = f"{path}[{key}]"
            return first_message(value, sub)
        return f"{path}: invalid" if path else "invalid request"
    if isinstance(detail, list):
        if not detail:
            return f"{path}: invalid" if path else "invalid request"
        if all(isinstance(item, (str, drf_exceptions.ErrorDetail)) for item in detail):
            return first_message(detail[0], path)
        for index, item in enumerate(detail):
            if item:
                return first_message(item, f"{path}[{index}]")
        return f"{path}: invalid"
    text = str(detail)
    return f"{path}: {text}" if path else text


def exception_handler(exc: Exception, context: dict) -> Response:
    if isinstance(exc, MemcloudError):
        return Response({"error": str(exc)}, status=exc.status, headers=exc.headers)
    if isinstance(exc, RequestDataTooBig):
        return Response({"error": "request body is too large"}, status=413)
    if isinstance(exc, Http404):
        return Response({"error": "not found"}, status=404)
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", exc)
        return Response({"error": "database unavailable, retry later"}, status=503,
                        headers={"Retry-After": "1"})
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
        return Response({"error": "database error, retry later"}, status=503, headers={"Retry-After": "1"})
    response = drf_exception_handler(exc, context)  # keeps Retry-After, WWW-Authenticate
    if response is None:
        logger.exception("unhandled error")
        return Response({"error": "internal server error"}, status=500)
    if isinstance(exc, drf_exceptions.ValidationError):
        response.data = {"error": first_message(exc.detail)}
    else:
        response.data = {"error": first_message(getattr(exc, "detail", str(exc)))}
    return response
