from django.core.management.base import BaseCommand, CommandError

from episodes.snapshot_services import tenant_checkpoint
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Write the binary index checkpoint of one tenant (SLUG) or of every tenant (--all), from the database."

    def add_arguments(self, parser):
        parser.add_argument("slug", nargs="?")
        parser.add_argument("--all", action="store_true", help="every active tenant")

    def handle(self, *args, **opts):
        if bool(opts["slug"]) == opts["all"]:
            raise CommandError("give either a tenant SLUG or --all")
        tenants = Tenant.objects.filter(is_active=True) if opts["all"] else Tenant.objects.filter(slug=opts["slug"])
        if not opts["all"] and not tenants:
            raise CommandError(f"no tenant {opts['slug']!r}")
        lines = []
        for tenant in tenants:
            count = tenant_checkpoint(tenant=tenant, from_database=True)
            lines.append(f"checkpoint of {tenant.slug}: {count} episodes")
        return "\n".join(lines)
