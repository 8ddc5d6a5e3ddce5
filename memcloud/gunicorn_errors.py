"""gunicorn answers requests it cannot parse (request line or headers too long, malformed headers)
itself, with an HTML page. docs/api.md §4 wants JSON errors everywhere: this swaps in a writer of
the same error answer the application gives (core.errors; importable before Django is set up)."""

from __future__ import annotations

from gunicorn import util

from core.errors import raw_error_response


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    util.write_nonblock(sock, raw_error_response(status_int, reason, f"{reason}: {mesg}" if mesg else reason))


def install() -> None:
    """Called from gunicorn.conf.py in the master, so every forked worker uses it."""
    util.write_error = write_json_error
