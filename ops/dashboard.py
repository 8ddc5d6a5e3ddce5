"""GET /dashboard: health, usage, config and charts of the last hour, and a per-tenant table, for
staff signed in to the admin; anyone else is sent to the admin's login. With
AGENT_MEM_PUBLIC_DASHBOARD on, everyone sees the aggregates, without the tenant table or any
filesystem path. Never a key."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from . import selectors
from .access import is_staff as staff_request
from .charts import bar_chart

CHART_MINUTES = 60
TOTALS_MINUTES = 24 * 60


def _clock(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%H:%M")


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    is_staff = staff_request(request)
    if not is_staff and not settings.AGENT_MEM_PUBLIC_DASHBOARD:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    now_minute = int(time.time() // 60)
    first = now_minute - CHART_MINUTES + 1
    series = selectors.usage_per_minute(first_minute=first, last_minute=now_minute)
    labels = (f"{_clock(first)} UTC", f"{_clock(now_minute)} UTC")
    context = {
        "database_ok": selectors.database_ok(),
        "totals": selectors.usage_totals(since_minute=now_minute - TOTALS_MINUTES + 1),
        "hour": {"requests": sum(r for _, r, _, _ in series), "stores": sum(s for _, _, s, _ in series),
                 "queries": sum(q for _, _, _, q in series)},
        "config": {
            "dim": settings.AGENT_MEM_DIM,
            "rate_limit": settings.AGENT_MEM_RATE_LIMIT,
            "rate_window": settings.AGENT_MEM_RATE_WINDOW_SECS,
            "rate_backend": "Redis" if settings.REDIS_URL else "database",
            "audit": bool(settings.AGENT_MEM_AUDIT_LOG),
            "data_dir": settings.AGENT_MEM_DATA_DIR if is_staff else None,  # a path is for staff only
        },
        "requests_chart": bar_chart([r for _, r, _, _ in series], title="Requests per minute",
                                    css_id="chart-requests", x_labels=labels),
        "stores_chart": bar_chart([s for _, _, s, _ in series], title="Episodes stored per minute",
                                  css_id="chart-stores", x_labels=labels),
        "is_staff": is_staff,
        "tenants": selectors.tenant_table(since_minute=now_minute - TOTALS_MINUTES + 1) if is_staff else None,
    }
    return render(request, "ops/dashboard.html", context)
