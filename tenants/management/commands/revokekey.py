from django.core.management.base import BaseCommand, CommandError

from core.errors import MemcloudError
from tenants.services import key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by its public prefix."

    def add_arguments(self, parser):
        parser.add_argument("prefix", help="the 8 characters after mc_ (a whole key is accepted too)")

    def handle(self, *args, **opts):
        prefix = opts["prefix"]
        if prefix.startswith("mc_"):
            prefix = prefix[3:11]
        try:
            key = key_revoke(prefix=prefix)
        except MemcloudError as exc:
            raise CommandError(str(exc)) from None
        return f"revoked key {key.prefix} of tenant {key.tenant.slug}"
