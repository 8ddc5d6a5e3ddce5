from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from .services import touch_answered

        request_finished.connect(touch_answered, dispatch_uid="memcloud-key-touch")
