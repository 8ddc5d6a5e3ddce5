from django.apps import AppConfig


class EpisodesConfig(AppConfig):
    name = "episodes"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import request_finished, request_started

        from .sweep import maybe_sweep, note_request

        request_started.connect(note_request, dispatch_uid="memcloud-expiry-sweep")
        request_finished.connect(maybe_sweep, dispatch_uid="memcloud-expiry-sweep")
