"""core.postgres: the health check needs no round trip on a quiet connection and still
replaces one the server has closed before the request's first statement."""

from __future__ import annotations

import psycopg
import pytest
from django.db import close_old_connections, connection
from django.db.backends.postgresql import base as django_postgres


@pytest.fixture
def postgres():
    if connection.vendor != "postgresql":
        pytest.skip("the backend is used on PostgreSQL only")
    connection.ensure_connection()
    return connection


def _terminate(conn) -> None:
    """Close conn's server side from another session, as a restart or an operator would."""
    info = conn.connection.info
    with psycopg.connect(host=info.host, port=info.port, user=info.user, dbname=info.dbname,
                         autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [info.backend_pid])
        # pg_terminate_backend only signals: wait until the session is gone.
        for _ in range(200):
            if other.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                             [info.backend_pid]).fetchone()[0] == 0:
                return
            other.execute("SELECT pg_sleep(0.01)")


@pytest.mark.django_db(transaction=True)
def test_a_quiet_connection_is_usable_without_a_query(postgres, monkeypatch):
    def no_round_trip(self):
        raise AssertionError("SELECT 1 was sent")

    monkeypatch.setattr(django_postgres.DatabaseWrapper, "is_usable", no_round_trip)
    assert postgres.is_usable()


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_closed_is_replaced_before_the_first_query(postgres, make_tenant, api):
    _, raw = make_tenant("hc", dim=2)
    old_pid = postgres.connection.info.backend_pid
    _terminate(postgres)
    assert not postgres.is_usable()
    close_old_connections()  # what request_started does in a server (the test client skips it)
    answer = api.as_key(raw).post("/v1/query", {"query_embedding": [1.0, 0.0]}, format="json")
    assert answer.status_code == 200, answer.content
    assert postgres.connection.info.backend_pid != old_pid
