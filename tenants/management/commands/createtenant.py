from django.core.management.base import BaseCommand, CommandError

from core.errors import MemcloudError
from tenants.models import Metric
from tenants.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--dim", type=int, default=None, help="embedding dimension (default AGENT_MEM_DIM)")
        parser.add_argument("--metric", choices=Metric.values, default=Metric.COSINE)
        parser.add_argument("--rate-limit", type=int, default=None, help="requests per window")
        parser.add_argument("--max-episodes", type=int, default=None)
        parser.add_argument("--default-ttl-secs", type=int, default=None)
        parser.add_argument("--embedder", default="", metavar="SPEC",
                            help="local-minilm | sentence-transformers:<model or path> | openai:<model>[@<dim>]; "
                                 "sets the dim")

    def handle(self, *args, **opts):
        try:
            tenant = tenant_create(
                slug=opts["slug"], name=opts["name"], dim=opts["dim"], metric=opts["metric"],
                rate_limit=opts["rate_limit"], max_episodes=opts["max_episodes"],
                default_ttl_secs=opts["default_ttl_secs"], embedder=opts["embedder"],
            )
        except MemcloudError as exc:
            raise CommandError(str(exc)) from None
        embedder = f", embedder {tenant.embedder}" if tenant.embedder else ""
        return f"created tenant {tenant.slug} (dim {tenant.dim}, {tenant.metric}{embedder})"
