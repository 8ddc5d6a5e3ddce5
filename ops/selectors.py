"""Reads for the dashboard: usage summed over worker slots, tenant figures. Aggregates only,
except `tenant_table`, which the view shows to staff alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection
from django.db.models import Count, Max, Q, Sum

from core.models import UsageMinute
from tenants.models import Tenant, TenantState


@dataclass(frozen=True)
class Totals:
    requests: int
    stores: int
    queries: int
    episodes: int
    tenants: int
    tenants_active: int


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:  # any failure means: the database does not answer
        return False
    return True


def usage_totals(*, since_minute: int) -> Totals:
    usage = UsageMinute.objects.filter(minute__gte=since_minute).aggregate(
        requests=Sum("requests"), stores=Sum("stores"), queries=Sum("queries"))
    tenants = Tenant.objects.aggregate(all=Count("pk"), active=Count("pk", filter=Q(state__episode_count__gt=0)))
    episodes = TenantState.objects.aggregate(n=Sum("episode_count"))["n"]
    return Totals(requests=usage["requests"] or 0, stores=usage["stores"] or 0, queries=usage["queries"] or 0,
                  episodes=episodes or 0, tenants=tenants["all"], tenants_active=tenants["active"])


def usage_per_minute(*, first_minute: int, last_minute: int) -> list[tuple[int, int, int, int]]:
    """(minute, requests, stores, queries) for every minute of the range, zeros included."""
    rows = (UsageMinute.objects.filter(minute__gte=first_minute, minute__lte=last_minute).values("minute")
            .annotate(r=Sum("requests"), s=Sum("stores"), q=Sum("queries")))
    by_minute = {row["minute"]: (row["r"], row["s"], row["q"]) for row in rows}
    return [(m, *by_minute.get(m, (0, 0, 0))) for m in range(first_minute, last_minute + 1)]


@dataclass(frozen=True)
class TenantRow:
    slug: str
    episodes: int
    requests: int
    last_activity: datetime | None


def tenant_table(*, since_minute: int) -> list[TenantRow]:
    """Per tenant: episodes now, requests in the period, last minute with a request."""
    usage = {row["tenant_id"]: row for row in UsageMinute.objects.filter(minute__gte=since_minute)
             .values("tenant_id").annotate(r=Sum("requests"), last=Max("minute"))}
    out = []
    for tenant_id, slug, episodes in Tenant.objects.order_by("slug").values_list("pk", "slug", "state__episode_count"):
        row = usage.get(tenant_id)
        last = datetime.fromtimestamp(row["last"] * 60, UTC) if row else None
        out.append(TenantRow(slug=slug, episodes=episodes or 0, requests=row["r"] if row else 0, last_activity=last))
    return out
