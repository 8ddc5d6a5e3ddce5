from django.core.management.base import BaseCommand, CommandError

from tenants.models import Tenant
from tenants.services import signing_key_create


class Command(BaseCommand):
    help = ("Create a signing key for a tenant's user tokens; prints `<kid>.<secret>` alone, once "
            "(docs/api.md §2).")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")

    def handle(self, *args, **opts):
        tenant = Tenant.objects.filter(slug=opts["slug"]).first()
        if tenant is None:
            raise CommandError(f"no tenant {opts['slug']!r}")
        _, printed = signing_key_create(tenant=tenant, name=opts["name"])
        return printed
