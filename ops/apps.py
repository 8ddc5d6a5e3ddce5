from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from episodes.cache import cache

        from . import schema  # noqa: F401 - registers the OpenAPI extensions
        from .metrics import index_cache_changed

        cache.on_change = index_cache_changed
