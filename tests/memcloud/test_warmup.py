"""memcloud/warmup.py: a worker's one-off start costs, paid before its first request."""

from __future__ import annotations

import gc
import sys

import pytest

from memcloud import warmup

pytestmark = pytest.mark.django_db


def test_warm_loads_the_urlconf_opens_the_connection_and_freezes_the_startup_objects():
    from django.db import connection

    try:
        warmup.warm()
        assert connection.connection is not None
        assert gc.get_freeze_count() > 0
        assert "episodes.views" in sys.modules  # the URLconf, with the views it names
    finally:
        gc.unfreeze()  # the test process is not a worker
