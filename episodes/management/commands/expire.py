from django.core.management.base import BaseCommand

from episodes.services import episodes_expire


class Command(BaseCommand):
    help = "Physically remove every tenant's expired episodes (the server also does it once a minute)."

    def handle(self, *args, **opts):
        removed = episodes_expire()
        return f"removed {removed} expired episodes"
