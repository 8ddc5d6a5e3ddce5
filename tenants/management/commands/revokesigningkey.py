from django.core.management.base import BaseCommand, CommandError

from core.errors import MemcloudError
from tenants.services import signing_key_revoke


class Command(BaseCommand):
    help = "Revoke a signing key by its kid: tokens it signed are refused from then on."

    def add_arguments(self, parser):
        parser.add_argument("kid", help="the kid (sk_...); the whole `<kid>.<secret>` is accepted too")

    def handle(self, *args, **opts):
        kid = opts["kid"].partition(".")[0]
        try:
            signing_key = signing_key_revoke(kid=kid)
        except MemcloudError as exc:
            raise CommandError(str(exc)) from None
        return f"revoked signing key {signing_key.kid} of tenant {signing_key.tenant.slug}"
