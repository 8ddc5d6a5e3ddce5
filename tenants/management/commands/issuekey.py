from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.errors import MemcloudError
from tenants.models import Scope, Tenant
from tenants.services import key_issue


class Command(BaseCommand):
    help = "Issue an API key for a tenant; prints the key alone, once."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--expires-days", type=float, default=None)
        parser.add_argument("--scope", choices=Scope.values, default=Scope.WRITE)
        parser.add_argument("--user-id", default=None,
                            help="bind the key to this end user: it sees and changes only their episodes")

    def handle(self, *args, **opts):
        tenant = Tenant.objects.filter(slug=opts["slug"]).first()
        if tenant is None:
            raise CommandError(f"no tenant {opts['slug']!r}")
        days = opts["expires_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-days must be > 0")
        expires = timezone.now() + timedelta(days=days) if days else None
        try:
            _, raw = key_issue(tenant=tenant, name=opts["name"], scope=opts["scope"], expires_at=expires,
                                user_id=opts["user_id"])
        except MemcloudError as exc:
            raise CommandError(str(exc)) from None
        return raw
