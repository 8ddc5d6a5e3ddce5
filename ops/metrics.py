"""The /metrics endpoint: every worker's metrics summed (core/metrics.py declares them), plus
gauges computed from the database at scrape time."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from tenants.models import TenantState

logger = logging.getLogger("memcloud.metrics")


class TenantsActiveCollector:
    """agent_mem_tenants_active, computed from the database at scrape time: exact whichever worker
    answers, and not a per-process figure that multiprocess mode would have to combine."""

    def describe(self):
        return [GaugeMetricFamily("agent_mem_tenants_active", "Tenants with at least one episode.")]

    def collect(self):
        family = GaugeMetricFamily("agent_mem_tenants_active", "Tenants with at least one episode.")
        try:
            family.add_metric([], TenantState.objects.filter(episode_count__gt=0).count())
        except DatabaseError as exc:  # a scrape must not fail because the database is away
            logger.warning("agent_mem_tenants_active not collected: %s", exc)
            return
        yield family


_db_registry = CollectorRegistry(auto_describe=False)
_db_registry.register(TenantsActiveCollector())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format: the per-worker files summed (multiprocess) plus the DB-derived gauges."""
    if settings.PROMETHEUS_MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:  # a single process (runserver, tests): its own registry holds everything
        registry = REGISTRY
    body = generate_latest(registry) + generate_latest(_db_registry)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
