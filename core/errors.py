"""Domain errors, the one error builder and the one exception-to-status table.

Every error answer is `{"error": "..."}` (docs/api.md §4). The DRF exception handler, the
project's middleware and error views, and gunicorn's own refusals all build it here, so a given
failure answers the same status, words and headers whichever layer catches it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.core.exceptions import BadRequest, PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

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


# --- the builder ---------------------------------------------------------------------------------

def error_payload(message: str) -> dict[str, str]:
    return {"error": message}


def error_body(message: str) -> bytes:
    return orjson.dumps(error_payload(message))


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
    """The error answer for a plain Django view or middleware."""
    return HttpResponse(error_body(message), status=status, content_type="application/json",
                        headers=dict(headers or {}))


def raw_error_response(status: int, reason: str, message: str, headers: Mapping[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 error answer as bytes, for a server writing to the socket itself (gunicorn's
    refusals of requests it cannot parse; the connection is closed after it)."""
    body = error_body(message)
    lines = [f"HTTP/1.1 {status} {reason}", "Connection: close", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin1") + body


# --- the table -----------------------------------------------------------------------------------

# A database outage is temporary: every 503 it causes tells the client when to retry.
DATABASE_RETRY = {"Retry-After": "1"}


@dataclass(frozen=True)
class Rule:
    """How one class of exception answers. `status` / `message` None: the exception's own (a
    MemcloudError's `status` and words, a DRF exception's `status_code` and detail)."""

    status: int | None
    message: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    log: int | None = None  # a log level for the failure, None: a client's mistake, not logged
    traceback: bool = False


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    message: str
    headers: dict[str, str]


# Looked up along the exception's MRO, so the most specific class wins (RequestDataTooBig is a
# SuspiciousOperation, OperationalError a DatabaseError).
STATUS_TABLE: dict[type[BaseException], Rule] = {
    MemcloudError: Rule(None, None),
    drf_exceptions.APIException: Rule(None, None),
    RequestDataTooBig: Rule(413, "request body is too large"),
    SuspiciousOperation: Rule(400, "bad request", log=logging.WARNING),
    BadRequest: Rule(400, "bad request"),
    PermissionDenied: Rule(403, "forbidden"),
    Http404: Rule(404, "not found"),
    OperationalError: Rule(503, "database unavailable, retry later", DATABASE_RETRY, log=logging.WARNING),
    InterfaceError: Rule(503, "database unavailable, retry later", DATABASE_RETRY, log=logging.WARNING),
    DatabaseError: Rule(503, "database error, retry later", DATABASE_RETRY, log=logging.ERROR, traceback=True),
}
UNHANDLED = Rule(500, "internal server error", log=logging.ERROR, traceback=True)


def rule_for(exc: BaseException) -> Rule:
    for cls in type(exc).__mro__:
        rule = STATUS_TABLE.get(cls)
        if rule is not None:
            return rule
    return UNHANDLED


def answer_for(exc: BaseException) -> ErrorAnswer:
    """Status, words and headers for an exception, from the table; logs what is the server's fault."""
    rule = rule_for(exc)
    if rule.log is not None:
        logger.log(rule.log, "%s: %s", rule.message or type(exc).__name__, exc, exc_info=rule.traceback)
    headers = dict(rule.headers)
    if isinstance(exc, MemcloudError) and exc.headers:
        headers.update(exc.headers)  # e.g. an unreachable embedder's Retry-After
    if isinstance(exc, drf_exceptions.APIException):
        # What DRF's own handler adds: the challenge of a 401 and the wait of a throttle.
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
    status = rule.status if rule.status is not None else _own_status(exc)
    if rule.message is not None:
        message = rule.message
    elif isinstance(exc, drf_exceptions.APIException):
        message = first_message(exc.detail)
    else:
        message = str(exc)
    return ErrorAnswer(status=status, message=message, headers=headers)


def _own_status(exc: BaseException) -> int:
    return exc.status_code if isinstance(exc, drf_exceptions.APIException) else exc.status  # type: ignore[attr-defined]


def exception_response(exc: BaseException) -> HttpResponse:
    """The error answer for an exception outside DRF (middleware, Django's error views)."""
    answer = answer_for(exc)
    return error_response(answer.status, answer.message, answer.headers)


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
    """DRF's EXCEPTION_HANDLER: every exception a /v1 view raises, answered from the table."""
    from rest_framework.views import set_rollback  # not at import: DRF's views module needs settings

    answer = answer_for(exc)
    set_rollback()  # as DRF's own handler does (matters only with ATOMIC_REQUESTS)
    return Response(error_payload(answer.message), status=answer.status, headers=answer.headers)
