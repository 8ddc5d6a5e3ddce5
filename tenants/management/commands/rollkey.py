from django.core.management.base import BaseCommand, CommandError

from core.errors import MemcloudError
from tenants.services import key_roll


class Command(BaseCommand):
    help = "Issue a new key with the same tenant and scope; the old key expires after the grace period."

    def add_arguments(self, parser):
        parser.add_argument("prefix")
        parser.add_argument("--grace-hours", type=float, default=24.0)

    def handle(self, *args, **opts):
        prefix = opts["prefix"]
        if prefix.startswith("mc_"):
            prefix = prefix[3:11]
        try:
            _, raw = key_roll(prefix=prefix, grace_hours=opts["grace_hours"])
        except MemcloudError as exc:
            raise CommandError(str(exc)) from None
        return raw
