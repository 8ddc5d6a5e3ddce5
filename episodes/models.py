"""Episodes live in the database (the source of truth); workers cache them in numpy (cache.py).

Coherence (docs/design.md, Coherence): every write locks its tenant's TenantState row
(tenants/models.py), bumps `version` and stamps the rows it adds or changes with the new value, and
records removals as Tombstones with the new value, all in one transaction.
"""

from __future__ import annotations

import uuid

from django.db import models

from tenants.models import Tenant

from . import spec


class Episode(models.Model):
    pk_id = models.BigAutoField(primary_key=True)
    id = models.UUIDField(default=uuid.uuid4)
    # No index of its own: every index below starts with tenant_id and serves lookups by tenant.
    # No database constraint either: PostgreSQL checks one per inserted row (a third of its time
    # storing a batch), and every store has already proven its tenant in the same transaction, by
    # locking the tenant's state row (tenants_tenantstate, whose key references the tenant).
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False,
                               db_constraint=False)
    seq = models.BigIntegerField()  # store order within the tenant (tie-break: later stored is newer)
    version = models.BigIntegerField()  # TenantState.version of the write that last changed the row
    task_id = models.CharField(max_length=spec.MAX_TASK_ID)
    embedding = models.BinaryField()  # float32 little-endian, as the client sent it
    reward = models.FloatField()
    metadata = models.JSONField(default=dict)
    timestamp = models.BigIntegerField()
    tags = models.JSONField(default=list)
    source = models.CharField(max_length=spec.MAX_NAME, null=True, blank=True)
    user_id = models.CharField(max_length=spec.MAX_NAME, null=True, blank=True)
    steps = models.JSONField(null=True, blank=True)
    expires_at = models.BigIntegerField(null=True, blank=True)  # ms since the epoch
    content_hash = models.CharField(max_length=64)  # digest of what the client sent (idempotent stores)
    text = models.TextField(null=True, blank=True)  # searched by keyword (memindex/keyword.py); never changes

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "id"], name="episode_tenant_id_unique")]
        indexes = [
            models.Index(fields=["tenant", "version"], name="episode_tenant_version"),
            models.Index(fields=["tenant", "timestamp", "seq"], name="episode_tenant_time"),
            models.Index(fields=["tenant", "expires_at"], name="episode_tenant_expiry"),
        ]


class Tombstone(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)  # as Episode's
    episode_id = models.UUIDField()
    version = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["tenant", "version"], name="tombstone_tenant_version")]


class IndexImage(models.Model):
    """A tenant's index packed in one byte string (memindex/packed.py) as of (generation, version):
    a worker that has never seen the tenant loads it in one read and catches up from `version`,
    instead of building the index row by row (episodes/images.py). Small tenants only."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="+")
    generation = models.BigIntegerField()
    version = models.BigIntegerField()
    data = models.BinaryField()

    def __str__(self) -> str:
        return f"index image of {self.tenant_id} g{self.generation} v{self.version}"


class SweepRun(models.Model):
    """When a deployment-wide periodic job last ran: the one row a worker must win to run it."""

    name = models.CharField(max_length=32, primary_key=True)
    last_run_ms = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.name} at {self.last_run_ms}"
