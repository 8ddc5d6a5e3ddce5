from episodes.snapshot_services import tenant_checkpoint
from tenants.commands import PerTenantCommand


class Command(PerTenantCommand):
    help = "Write the binary index checkpoint of one tenant (SLUG) or of every tenant (--all), from the database."

    def handle(self, *args, **opts):
        tenants = self.chosen_tenants(opts)
        lines = []
        for tenant in tenants:
            count = tenant_checkpoint(tenant=tenant, from_database=True)
            lines.append(f"checkpoint of {tenant.slug}: {count} episodes")
        return "\n".join(lines)
