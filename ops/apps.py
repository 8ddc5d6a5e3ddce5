from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from episodes.cache import cache

        from . import schema  # noqa: F401 - registers the OpenAPI extensions
        from .metrics import index_cache_changed
        from .usage import record_answered

        cache.on_change = index_cache_changed
        request_finished.connect(record_answered, dispatch_uid="memcloud-usage")
