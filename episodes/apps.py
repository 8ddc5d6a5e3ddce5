from django.apps import AppConfig


class EpisodesConfig(AppConfig):
    name = "episodes"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from .sweep import maybe_sweep

        request_finished.connect(maybe_sweep, dispatch_uid="memcloud-expiry-sweep")
