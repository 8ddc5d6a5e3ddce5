from episodes.cache import refresh_image
from tenants.commands import PerTenantCommand


class Command(PerTenantCommand):
    help = ("Write the packed index image of one tenant (SLUG) or of every active tenant (--all) whose image "
            "is missing or behind, from the database: after a bulk load, or periodically, so that no "
            "worker's first query of a small tenant has to build its index (docs/scaling.md §4).")

    def handle(self, *args, **opts):
        tenants = self.chosen_tenants(opts)
        written = current = skipped = 0
        for tenant in tenants.order_by("pk").iterator(chunk_size=500):
            outcome = refresh_image(tenant)
            written += outcome == "written"
            current += outcome == "current"
            skipped += outcome == "too large"
        return f"index images: {written} written, {current} already current, {skipped} too large to image"
