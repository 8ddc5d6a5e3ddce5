"""Django admin: tenants, and keys issued (shown once), revoked and rolled here too."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.utils import timezone

from core.audit import audit
from core.errors import InvalidInput, MemcloudError

from .keys import make_key
from .models import ApiKey, SigningKey, Tenant, TenantState
from .services import embedder_and_dim, key_revoke, key_roll, signing_key_revoke, validate_bound_user
from .tokens import make_signing_key


class TenantAddForm(forms.ModelForm):
    """A new tenant: with an embedder, its dim comes from the embedder (the same rule as createtenant)."""

    class Meta:
        model = Tenant
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dim"].required = False
        self.fields["dim"].help_text = "Leave empty with an embedder: its own dim is used."

    def clean(self):
        data = super().clean()
        try:
            data["embedder"], dim = embedder_and_dim(data.get("embedder", ""), data.get("dim"))
        except MemcloudError as exc:
            field = "dim" if str(exc).startswith("dim:") else "embedder"
            self.add_error(field, str(exc))
            return data
        if dim is None:
            self.add_error("dim", "required without an embedder")
        data["dim"] = dim
        return data


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("prefix", "name", "scope", "user_id", "created", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "dim", "metric", "embedder", "is_active", "rate_limit", "max_episodes",
                    "episodes", "created")
    list_filter = ("is_active", "metric")
    search_fields = ("slug", "name")
    inlines = [ApiKeyInline]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = TenantAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        # dim, metric and the embedder shape every stored embedding: fixed once the tenant exists.
        return ("slug", "dim", "metric", "embedder", "created") if obj else ("created",)

    @admin.display(description="episodes")
    def episodes(self, obj: Tenant) -> int:
        state = TenantState.objects.filter(tenant=obj).first()
        return state.episode_count if state else 0

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            TenantState.objects.get_or_create(tenant=obj)


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is None:  # the binding is set once, at issue
            try:
                cleaned["user_id"] = validate_bound_user(cleaned.get("user_id") or None, cleaned.get("scope"))
            except InvalidInput as exc:
                raise forms.ValidationError(str(exc)) from None
        return cleaned


class ShownOnceAdmin(admin.ModelAdmin):
    """A credential whose secret is made when it is added in the admin, audited, and shown once."""

    issued_op = issued_what = ""

    def new_secret(self, obj) -> tuple[str, str]:
        """Fill `obj`'s stored parts; return the secret to show and the public id to audit."""
        raise NotImplementedError

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        shown, public = self.new_secret(obj)
        super().save_model(request, obj, form, change)
        audit(self.issued_op, tenant_id=obj.tenant.slug, key_prefix=public)
        messages.warning(request, f"New {self.issued_what} for {obj.tenant.slug} (shown only once, copy it now): {shown}")


@admin.register(ApiKey)
class ApiKeyAdmin(ShownOnceAdmin):
    form = ApiKeyForm
    list_display = ("prefix", "tenant", "name", "scope", "user_id", "created", "expires_at", "revoked_at",
                    "last_used_at")
    list_filter = ("scope", "tenant")
    search_fields = ("prefix", "name", "tenant__slug", "user_id")
    actions = ["revoke_keys", "roll_keys"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", "name", "scope", "user_id", "expires_at")
        return ("tenant", "name", "prefix", "scope", "user_id", "created", "expires_at", "revoked_at",
                "last_used_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # A revoked key stays revoked: revoke with the action, never by editing the field back. The
        # user binding is fixed: issue a new key for another user.
        return ("tenant", "prefix", "scope", "user_id", "created", "revoked_at", "last_used_at")

    issued_op, issued_what = "key_issued", "API key"

    def new_secret(self, obj: ApiKey) -> tuple[str, str]:
        raw, obj.prefix, obj.key_hash = make_key()
        return raw, obj.prefix

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            key_revoke(prefix=key.prefix)
        messages.success(request, "revoked")

    @admin.action(description="Roll selected keys (new key; old expires in 24 h)")
    def roll_keys(self, request, queryset):
        now = timezone.now()
        for key in queryset:
            if key.revoked_at is None and (key.expires_at is None or key.expires_at > now):
                new, raw = key_roll(prefix=key.prefix, grace_hours=24)
                messages.warning(request, f"New key replacing {key.prefix} (shown only once): {raw}")


@admin.register(SigningKey)
class SigningKeyAdmin(ShownOnceAdmin):
    """Signing keys of tenant user tokens: the secret is shown once, at creation."""

    list_display = ("kid", "tenant", "name", "created", "revoked_at")
    list_filter = ("tenant",)
    search_fields = ("kid", "name", "tenant__slug")
    actions = ["revoke_signing_keys"]

    def get_fields(self, request, obj=None):
        return ("tenant", "name") if obj is None else ("tenant", "name", "kid", "created", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("tenant", "kid", "created", "revoked_at")

    issued_op, issued_what = "signing_key_created", "signing key"

    def new_secret(self, obj: SigningKey) -> tuple[str, str]:
        obj.kid, obj.salt, printed = make_signing_key()
        return printed, obj.kid

    @admin.action(description="Revoke selected signing keys")
    def revoke_signing_keys(self, request, queryset):
        for signing_key in queryset.filter(revoked_at__isnull=True):
            signing_key_revoke(kid=signing_key.kid)
        messages.success(request, "revoked")
