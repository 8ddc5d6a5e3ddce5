"""Usage in the admin, read-only: per tenant and minute, summed over workers on the dashboard."""

from __future__ import annotations

from django.contrib import admin

from .models import UsageMinute


@admin.register(UsageMinute)
class UsageMinuteAdmin(admin.ModelAdmin):
    list_display = ("tenant", "minute", "slot", "user_id", "requests", "stores", "queries")
    list_filter = ("tenant",)
    search_fields = ("user_id",)
    ordering = ("-minute",)
    list_select_related = ("tenant",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
