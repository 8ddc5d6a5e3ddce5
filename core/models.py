"""Per-request counters: rate-limit windows and per-minute usage (docs/api.md §5 and §6).

Both tables take a write on every request, so on PostgreSQL they are UNLOGGED (migration 0002):
no WAL traffic, and after a crash they come back empty, which for a rate-limit window or a
dashboard chart is acceptable. No foreign key constraint either: nothing to check per insert,
and rows of a deleted tenant age out with everyone else's. The tenant is named by its app label, not
imported: this ground layer imports no app above it (docs/design.md, Layers).
"""

from __future__ import annotations

from django.db import models


class RateCounter(models.Model):
    """Requests a tenant made in one fixed window (`window_no = floor(now / window_secs)`)."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    window_no = models.BigIntegerField()
    count = models.IntegerField(default=0)

    class Meta:
        db_table = "ops_rate_counter"
        constraints = [models.UniqueConstraint(fields=["tenant", "window_no"], name="rate_counter_tenant_window")]


class UsageMinute(models.Model):
    """What one worker process served for a tenant (and end user) in one clock minute. One row per
    worker (`slot`) so that workers never wait on each other's row lock; readers sum the rows."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    minute = models.BigIntegerField()  # floor(unix seconds / 60)
    slot = models.IntegerField()
    requests = models.IntegerField(default=0)
    stores = models.IntegerField(default=0)
    queries = models.IntegerField(default=0)
    # The end user of a user-bound key or token (docs/api.md §2); "" for a tenant-wide key. Not
    # NULL: the upsert's unique key must match on it, and NULLs are never equal.
    user_id = models.CharField(max_length=256, default="", db_default="", blank=True)

    class Meta:
        db_table = "ops_usage_minute"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "minute", "slot", "user_id"],
                                    name="usage_minute_tenant_minute_slot_user")
        ]
        indexes = [models.Index(fields=["minute"], name="usage_minute_minute")]
