"""What a worker does once, after loading the app and before its first request (gunicorn's
post_worker_init): the work Django and the libraries otherwise leave to the first request.

A new worker's first query paid about 0.6 s on a loaded 2-core machine (docs/scaling.md §4):
Django imports the URLconf (every view, DRF, the OpenAPI schema) on the first request, the
database connection opens, and numpy sets up its first matrix product. Done here, before the worker
accepts a connection, none of it lands on a client. Nothing here writes or answers anything; a
failure (the database not up yet) only leaves that part to the first request.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger("memcloud.warmup")


def warm() -> None:
    from django.db import DatabaseError, connection
    from django.urls import get_resolver

    get_resolver().resolve("/v1/query")  # imports the URLconf: every view module and what it imports
    try:
        connection.ensure_connection()  # kept for the worker's requests (CONN_MAX_AGE)
    except DatabaseError as exc:
        logger.warning("database not reached before the first request: %s", exc)
    _first_search()
    # Everything loaded so far lives as long as the worker: out of the collector's way, so a full
    # collection during a request walks only what requests allocated (it walked ~95,000 objects).
    gc.collect()
    gc.freeze()


def _first_search() -> None:
    """One search of a tiny index: numpy's first matrix product and the search's code paths."""
    import numpy as np

    from memindex.columns import NO_EXPIRY
    from memindex.index import TenantIndex

    index = TenantIndex(4, "cosine")
    index.add(ids=["a", "b"], embeddings=np.eye(2, 4, dtype=np.float32), seq=np.arange(2),
              timestamp=np.zeros(2, dtype=np.int64), reward=np.zeros(2), expires_at=np.full(2, NO_EXPIRY),
              task_id=["t", "t"], source=[None, None], user_id=[None, None], tags=[[], []])
    index.search(np.ones(4, dtype=np.float32), 1)
