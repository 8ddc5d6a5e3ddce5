from django.core.management.base import BaseCommand, CommandError

from episodes.cache import refresh_image
from tenants.models import Tenant


class Command(BaseCommand):
    help = ("Write the packed index image of one tenant (SLUG) or of every active tenant (--all) whose image "
            "is missing or behind, from the database: after a bulk load, or periodically, so that no "
            "worker's first query of a small tenant has to build its index (docs/scaling.md §4).")

    def add_arguments(self, parser):
        parser.add_argument("slug", nargs="?")
        parser.add_argument("--all", action="store_true", help="every active tenant")

    def handle(self, *args, **opts):
        if bool(opts["slug"]) == opts["all"]:
            raise CommandError("give either a tenant SLUG or --all")
        tenants = Tenant.objects.filter(is_active=True) if opts["all"] else Tenant.objects.filter(slug=opts["slug"])
        if not opts["all"] and not tenants:
            raise CommandError(f"no tenant {opts['slug']!r}")
        written = current = skipped = 0
        for tenant in tenants.order_by("pk").iterator(chunk_size=500):
            outcome = refresh_image(tenant)
            written += outcome == "written"
            current += outcome == "current"
            skipped += outcome == "too large"
        return f"index images: {written} written, {current} already current, {skipped} too large to image"
