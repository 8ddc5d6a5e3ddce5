from django.core.management.base import BaseCommand

from tenants.models import Tenant
from tenants.services import key_issue, tenant_create


class Command(BaseCommand):
    help = "Create the development tenant 'dev' and print its key (once), unless it exists."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8080", help="where the server will listen (for the hint)")

    def handle(self, *args, **opts):
        tenant = Tenant.objects.filter(slug="dev").first()
        if tenant is not None:
            return ("tenant 'dev' exists; its key was printed when it was created. "
                    "New key: .venv/bin/python manage.py issuekey dev")
        tenant = tenant_create(slug="dev", name="Development")
        _, raw = key_issue(tenant=tenant, name="make run", scope="admin")
        return (f"created tenant 'dev' (dim {tenant.dim}). Its API key, shown only this once:\n\n    {raw}\n\n"
                f"Try: curl -H 'Authorization: Bearer {raw}' {opts['url']}/v1/stats")
