"""Tenants and their API keys. Only a hash of each key is stored (docs/api.md §2)."""

from __future__ import annotations

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class Metric(models.TextChoices):
    COSINE = "cosine"
    L2 = "l2"
    DOT = "dot"


class Scope(models.TextChoices):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


SCOPE_RANK = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


class Tenant(models.Model):
    slug = models.CharField(max_length=63, unique=True, validators=[RegexValidator(SLUG_PATTERN)])
    name = models.CharField(max_length=200, blank=True)
    dim = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    metric = models.CharField(max_length=8, choices=Metric.choices, default=Metric.COSINE)
    is_active = models.BooleanField(default=True)
    rate_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per window; empty uses AGENT_MEM_RATE_LIMIT."
    )
    max_episodes = models.PositiveBigIntegerField(null=True, blank=True, help_text="Empty: no quota.")
    default_ttl_secs = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Default time to live of new episodes; empty: keep forever."
    )
    embedder = models.CharField(
        max_length=300, blank=True, default="",
        help_text="local-minilm, sentence-transformers:<model or path>, openai:<model>[@<dim>]; empty: none. "
                  "Sets dim; fixed once the tenant exists.",
    )
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    # DRF treats request.user as the authenticated principal: the tenant is ours.
    @property
    def is_authenticated(self) -> bool:
        return True


class ApiKey(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.WRITE)
    created = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A user-bound key sees and changes only the episodes of this end user (docs/api.md §2).
    user_id = models.CharField(max_length=256, null=True, blank=True,
                               help_text="Empty: the key acts on every user's episodes.")

    class Meta:
        ordering = ["-created"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix} ({self.tenant.slug})"

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now


class SigningKey(models.Model):
    """A tenant's secret for signing its own user tokens (docs/api.md §2, docs/design.md "User-level
    access"). Only `salt` is stored: the secret is HMAC(server key, kid + salt), re-derived by the
    server on each use, so the database alone cannot mint a token."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="signing_keys")
    kid = models.CharField(max_length=32, unique=True, editable=False)
    salt = models.CharField(max_length=64, editable=False)
    name = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.kid} ({self.tenant.slug})"


class TenantState(models.Model):
    """A tenant's change counters (docs/design.md, Coherence). Every write locks this row, bumps
    `version` and stamps the rows it adds or changes with the new value, and records removals as
    tombstones with it, all in one transaction: a tenant's versions commit in order, and a worker whose
    cache is at version v needs only the rows and tombstones stamped after v. Bulk replacements bump
    `generation` instead, which makes every worker rebuild."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="state")
    version = models.BigIntegerField(default=0)
    generation = models.BigIntegerField(default=0)
    next_seq = models.BigIntegerField(default=0)
    episode_count = models.BigIntegerField(default=0)
    # Tombstones below this version were discarded: a cache older than it must rebuild.
    tombstone_floor = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"state of {self.tenant_id} v{self.version} g{self.generation}"
