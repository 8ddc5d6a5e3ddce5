"""What management commands that act on one tenant or on all of them share."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db.models import QuerySet

from .models import Tenant


class PerTenantCommand(BaseCommand):
    """A command on one tenant (SLUG) or on every active tenant (--all)."""

    def add_arguments(self, parser):
        parser.add_argument("slug", nargs="?")
        parser.add_argument("--all", action="store_true", help="every active tenant")

    def chosen_tenants(self, opts: dict) -> QuerySet[Tenant]:
        if bool(opts["slug"]) == opts["all"]:
            raise CommandError("give either a tenant SLUG or --all")
        tenants = Tenant.objects.filter(is_active=True) if opts["all"] else Tenant.objects.filter(slug=opts["slug"])
        if not opts["all"] and not tenants:
            raise CommandError(f"no tenant {opts['slug']!r}")
        return tenants
