"""The one error builder and the one exception-to-status table (core.errors), and that the DRF
handler, the middleware, Django's error views and gunicorn's writer all answer from them."""

from __future__ import annotations

import socket

import orjson
import pytest
from django.core.exceptions import BadRequest, PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions as drf

from core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    Unavailable,
    answer_for,
    error_body,
    error_response,
    raw_error_response,
)
from memcloud.gunicorn_errors import write_json_error

DB_DOWN = (503, "database unavailable, retry later", {"Retry-After": "1"})


@pytest.mark.parametrize(("exc", "expected"), [
    (OperationalError("refused"), DB_DOWN),
    (InterfaceError("closed"), DB_DOWN),
    (DatabaseError("odd"), (503, "database error, retry later", {"Retry-After": "1"})),
    (IntegrityError("dup"), (503, "database error, retry later", {"Retry-After": "1"})),
    (RequestDataTooBig("x"), (413, "request body is too large", {})),  # a SuspiciousOperation: the specific wins
    (SuspiciousOperation("Invalid HTTP_HOST header: 'evil'"), (400, "bad request", {})),  # no internals echoed
    (BadRequest("x"), (400, "bad request", {})),
    (PermissionDenied(), (403, "forbidden", {})),
    (Http404("x"), (404, "not found", {})),
    (InvalidInput("reward: must be a number"), (400, "reward: must be a number", {})),
    (NotFound("episode 1 not found"), (404, "episode 1 not found", {})),
    (Conflict("id: exists"), (409, "id: exists", {})),
    (Forbidden("tenant 'x' is inactive"), (403, "tenant 'x' is inactive", {})),
    (QuotaExceeded("max_episodes: full"), (403, "max_episodes: full", {})),
    (PayloadTooLarge("request body is too large (limit 5 bytes)"),
     (413, "request body is too large (limit 5 bytes)", {})),
    (Unavailable("cannot write the snapshot"), (503, "cannot write the snapshot", {})),
    (drf.ValidationError({"episodes": [{}, {"reward": ["must be finite"]}]}),
     (400, "episodes[1].reward: must be finite", {})),
    (drf.ParseError("malformed JSON"), (400, "malformed JSON", {})),
    (drf.Throttled(wait=3), (429, "Request was throttled. Expected available in 3 seconds.", {"Retry-After": "3"})),
    (ZeroDivisionError("bug"), (500, "internal server error", {})),
])
def test_the_table(exc, expected):
    answer = answer_for(exc)
    assert (answer.status, answer.message, answer.headers) == expected


def test_a_401_carries_its_challenge():
    exc = drf.AuthenticationFailed("invalid API key")
    exc.auth_header = 'Bearer realm="memcloud"'  # what DRF's APIView sets before the handler
    answer = answer_for(exc)
    assert (answer.status, answer.message, answer.headers) == (
        401, "invalid API key", {"WWW-Authenticate": 'Bearer realm="memcloud"'})


def test_the_builder():
    assert orjson.loads(error_body("tags[0]: bad")) == {"error": "tags[0]: bad"}
    response = error_response(405, "method PUT not allowed: use GET", {"Allow": "GET, HEAD"})
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response["Allow"] == "GET, HEAD"
    assert orjson.loads(response.content) == {"error": "method PUT not allowed: use GET"}


def test_the_raw_form_is_a_whole_http_answer():
    raw = raw_error_response(431, "Request Header Fields Too Large", "too many headers", {"X-A": "b"})
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode("latin1").split("\r\n")
    assert lines[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    assert "Connection: close" in lines and "Content-Type: application/json" in lines and "X-A: b" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert orjson.loads(body) == {"error": "too many headers"}


def test_gunicorn_writes_the_same_answer():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        write_json_error(ours, 414, "Request-URI Too Long", "8190 bytes")
        ours.shutdown(socket.SHUT_WR)
        received = b"".join(iter(lambda: theirs.recv(4096), b""))
    assert received == raw_error_response(414, "Request-URI Too Long", "Request-URI Too Long: 8190 bytes")


# Through Django: the same exception answers the same from a plain view (JsonExceptionMiddleware)
# and from a DRF view (the EXCEPTION_HANDLER).
THROUGH = [
    ("operational", *DB_DOWN),
    ("database", 503, "database error, retry later", {"Retry-After": "1"}),
    ("too-big", 413, "request body is too large", {}),
    ("suspicious", 400, "bad request", {}),
    ("denied", 403, "forbidden", {}),
    ("missing", 404, "not found", {}),
    ("forbidden", 403, "tenant 'x' is inactive", {}),
    ("invalid", 400, "reward: must be a number", {}),
    ("bug", 500, "internal server error", {}),
]


@pytest.mark.urls("tests.core.urls")
@pytest.mark.parametrize("kind", ["plain", "drf"])
@pytest.mark.parametrize(("what", "status", "message", "headers"), THROUGH)
@pytest.mark.parametrize("debug", [False, True])
def test_every_layer_answers_from_the_table(client, settings, kind, what, status, message, headers, debug):
    settings.DEBUG = debug  # Django's own pages for these are HTML with DEBUG on: never here
    response = client.get(f"/raise/{kind}/{what}")
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": message}
    for name, value in headers.items():
        assert response[name] == value
    if not headers:
        assert not response.has_header("Retry-After")


@pytest.mark.urls("tests.core.urls")
def test_django_error_views_answer_from_the_table(client, rf):
    from memcloud.urls import json_bad_request, json_not_found, json_permission_denied, json_server_error

    request = rf.get("/nowhere")
    assert orjson.loads(json_not_found(request).content) == {"error": "no such endpoint: /nowhere"}
    too_big = json_bad_request(request, RequestDataTooBig("x"))  # Django calls handler400 for it
    assert (too_big.status_code, orjson.loads(too_big.content)) == (413, {"error": "request body is too large"})
    plain = json_bad_request(request, SuspiciousOperation("internal detail"))
    assert (plain.status_code, orjson.loads(plain.content)) == (400, {"error": "bad request"})
    denied = json_permission_denied(request, PermissionDenied())
    assert (denied.status_code, orjson.loads(denied.content)) == (403, {"error": "forbidden"})
    failed = json_server_error(request)
    assert (failed.status_code, orjson.loads(failed.content)) == (500, {"error": "internal server error"})
