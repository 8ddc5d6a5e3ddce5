from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The ground every app builds on: errors, database helpers, JSON, audit, metrics, counters, usage."""

    name = "core"
    verbose_name = "Usage"  # the admin lists per-minute usage under this heading
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from .usage import record_answered

        request_finished.connect(record_answered, dispatch_uid="memcloud-usage")
