from django.apps import AppConfig


class OpsConfig(AppConfig):
    """The operator's views: dashboard, metrics endpoint, health and readiness."""

    name = "ops"
    default_auto_field = "django.db.models.BigAutoField"
