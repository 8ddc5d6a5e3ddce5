from django.apps import AppConfig


class EpisodesConfig(AppConfig):
    name = "episodes"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import request_finished, request_started

        from core import metrics

        from . import images
        from .cache import cache
        from .sweep import maybe_sweep, note_request

        metrics.watch_index_cache(cache)

        request_started.connect(images.note_request, dispatch_uid="memcloud-image-writes")
        # Before the sweep (receivers run in the order connected): the image is what the next
        # worker's first query of the tenant waits for.
        request_finished.connect(images.write_answered, dispatch_uid="memcloud-image-writes")
        request_started.connect(note_request, dispatch_uid="memcloud-expiry-sweep")
        request_finished.connect(maybe_sweep, dispatch_uid="memcloud-expiry-sweep")
