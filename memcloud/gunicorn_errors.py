"""gunicorn answers requests it cannot parse (request line or headers too long, malformed headers)
itself, with an HTML page. SPEC section 4 wants JSON errors everywhere: this swaps in a JSON writer."""

from __future__ import annotations

import json

from gunicorn import util


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    body = json.dumps({"error": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin1")
    util.write_nonblock(sock, head + body)


def install() -> None:
    """Called from gunicorn.conf.py in the master, so every forked worker uses it."""
    util.write_error = write_json_error
