"""Django's PostgreSQL backend with a health check that costs no round trip while the connection is fine.

With CONN_HEALTH_CHECKS, Django runs `SELECT 1` before the first query of every request: a third
database round trip on a query that otherwise needs two. A server that closes a connection (a
restart, `pg_terminate_backend`, an idle timeout) sends its goodbye first (an error message, then
end of file), so an idle connection whose socket has nothing to read has not been closed by the
server. Only when something is waiting does the check fall back to Django's `SELECT 1`, which
replaces a dead connection before the request's first statement, as before.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed:
            return False
        try:
            waiting, _, _ = select.select([conn.fileno()], [], [], 0)
        except (OSError, ValueError):  # the socket is gone
            return False
        return not waiting or super().is_usable()
