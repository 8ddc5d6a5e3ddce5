"""The expiry sweep inside the server: at most once per interval across every worker and replica.

Each worker looks at most once per interval (a clock in the process, no database work between);
then one conditional UPDATE on a SweepRun row decides which worker of the whole deployment runs
it. It runs when a /v1 request has finished (its response already handed to the server; /health
and /metrics never trigger it), in bounded chunks, and a failure is logged, never raised: a sweep
must not slow or fail a request.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction

from .models import SweepRun
from .services import episodes_expire, now_ms

logger = logging.getLogger("memcloud.sweep")

NAME = "expire"
MAX_CHUNKS_PER_RUN = 20  # the rest waits for the next run (or `manage.py expire`)

_next_look = 0.0
_running = threading.Lock()
_api_request = threading.local()


def claim(*, name: str, interval_secs: float, at_ms: int) -> bool:
    """True for exactly one caller per interval, whichever process or replica asks."""
    due = at_ms - int(interval_secs * 1000)
    if SweepRun.objects.filter(name=name, last_run_ms__lte=due).update(last_run_ms=at_ms):
        return True
    if SweepRun.objects.filter(name=name).exists():
        return False
    try:
        with transaction.atomic():
            SweepRun.objects.create(name=name, last_run_ms=at_ms)
    except IntegrityError:  # another worker created it first: it runs this time
        return False
    return True


def note_request(environ=None, **_kwargs) -> None:
    """`request_started` receiver: remember whether this thread serves an API request."""
    _api_request.value = bool(environ) and environ.get("PATH_INFO", "").startswith("/v1/")


def maybe_sweep(**_kwargs) -> None:
    """`request_finished` receiver."""
    global _next_look
    api, _api_request.value = getattr(_api_request, "value", False), False
    interval = settings.AGENT_MEM_EXPIRE_INTERVAL_SECS
    if not api or not interval or time.monotonic() < _next_look or not _running.acquire(blocking=False):
        return
    try:
        _next_look = time.monotonic() + interval
        if claim(name=NAME, interval_secs=interval, at_ms=now_ms()):
            removed = episodes_expire(max_chunks=MAX_CHUNKS_PER_RUN)
            if removed:
                logger.info("expiry sweep removed %d episodes", removed)
    except DatabaseError as exc:  # e.g. the database is restarting: the next interval retries
        logger.warning("expiry sweep failed: %s", exc)
    except Exception:
        logger.exception("expiry sweep failed")
    finally:
        _running.release()
