"""The smallest WSGI application: what gunicorn and the client cost with no framework behind them
(bench/request_path.py serves it with `gunicorn bench.bare_wsgi:application`)."""

from __future__ import annotations


def application(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]
