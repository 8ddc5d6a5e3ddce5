"""tenants/admin.py through Django's test client as a superuser: keys issued (shown once), revoked and
rolled from the admin; the prefix, hash and revocation cannot be edited; tenants get their state."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from tenants.keys import verify
from tenants.models import ApiKey, Tenant

pytestmark = pytest.mark.django_db

KEYS = "/admin/tenants/apikey/"
RAW_KEY = re.compile(r"mc_[a-z0-9]{8}_[A-Za-z0-9_-]{43}")


def page_keys(response) -> list[str]:
    return RAW_KEY.findall(response.content.decode())


def works(raw: str) -> bool:
    return APIClient().get("/v1/stats", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200


def act(admin_client, action: str, *keys: ApiKey):
    return admin_client.post(KEYS, {"action": action, "_selected_action": [k.pk for k in keys]}, follow=True)


def test_it_needs_a_staff_login(client, tenant):
    r = client.get(KEYS)
    assert r.status_code == 302 and "/admin/login/" in r["Location"]


def test_it_issues_a_key_and_shows_it_once(admin_client, tenant):
    t, _ = tenant
    r = admin_client.post(f"{KEYS}add/", {"tenant": t.pk, "name": "from-admin", "scope": "read"}, follow=True)
    assert r.status_code == 200
    shown = page_keys(r)
    assert len(shown) == 1 and "shown only once" in r.content.decode()
    raw = shown[0]
    key = ApiKey.objects.get(name="from-admin")
    assert (key.prefix, key.scope, key.tenant_id) == (raw[3:11], "read", t.pk)
    assert verify(raw, key.key_hash) and works(raw)
    # Never again: neither the list nor the key's own page shows it.
    assert page_keys(admin_client.get(KEYS)) == []
    assert page_keys(admin_client.get(f"{KEYS}{key.pk}/change/")) == []


def test_it_refuses_an_add_without_a_tenant(admin_client, tenant):
    before = ApiKey.objects.count()
    r = admin_client.post(f"{KEYS}add/", {"name": "orphan", "scope": "read"})
    assert r.status_code == 200 and page_keys(r) == []  # the form again, with its error
    assert ApiKey.objects.count() == before


def test_its_add_form_asks_for_no_prefix_or_hash(admin_client):
    html = admin_client.get(f"{KEYS}add/").content.decode()
    assert 'name="tenant"' in html and 'name="scope"' in html
    assert 'name="prefix"' not in html and 'name="key_hash"' not in html


def test_it_shows_the_prefix_read_only_and_never_the_hash(admin_client, tenant):
    _, raw = tenant
    key = ApiKey.objects.get(prefix=raw[3:11])
    html = admin_client.get(f"{KEYS}{key.pk}/change/").content.decode()
    assert key.prefix in html and 'name="prefix"' not in html
    assert key.key_hash not in html and 'name="key_hash"' not in html


def test_editing_a_key_cannot_change_its_prefix_hash_scope_or_tenant(admin_client, tenant, other_tenant):
    _, raw = tenant
    rival, _ = other_tenant
    key = ApiKey.objects.get(prefix=raw[3:11])
    r = admin_client.post(f"{KEYS}{key.pk}/change/", {
        "name": "renamed", "prefix": "aaaaaaaa", "key_hash": "0" * 64, "scope": "read", "tenant": rival.pk,
    })
    assert r.status_code == 302, r.content
    after = ApiKey.objects.get(pk=key.pk)
    assert after.name == "renamed"
    assert (after.prefix, after.key_hash, after.scope, after.tenant_id) == (
        key.prefix, key.key_hash, key.scope, key.tenant_id)
    assert works(raw)


def test_the_revoke_action_revokes_only_the_selected_keys(admin_client, tenant, other_tenant):
    _, raw = tenant
    _, rival_raw = other_tenant
    r = act(admin_client, "revoke_keys", ApiKey.objects.get(prefix=raw[3:11]))
    assert r.status_code == 200 and "revoked" in r.content.decode()
    assert ApiKey.objects.get(prefix=raw[3:11]).revoked_at is not None
    assert not works(raw)
    assert ApiKey.objects.get(prefix=rival_raw[3:11]).revoked_at is None and works(rival_raw)


def test_a_revoked_key_stays_revoked(admin_client, tenant):
    _, raw = tenant
    key = ApiKey.objects.get(prefix=raw[3:11])
    act(admin_client, "revoke_keys", key)
    revoked_at = ApiKey.objects.get(pk=key.pk).revoked_at
    # Revoking again keeps the first time; saving the form with the field emptied changes nothing.
    act(admin_client, "revoke_keys", key)
    html = admin_client.get(f"{KEYS}{key.pk}/change/").content.decode()
    assert 'name="revoked_at_0"' not in html and 'name="revoked_at"' not in html
    r = admin_client.post(f"{KEYS}{key.pk}/change/", {"name": "again", "revoked_at_0": "", "revoked_at_1": ""})
    assert r.status_code == 302, r.content
    assert ApiKey.objects.get(pk=key.pk).revoked_at == revoked_at
    assert not works(raw)


def test_the_roll_action_shows_the_new_key_once_and_keeps_the_old_for_the_grace(admin_client, tenant):
    t, raw = tenant
    key = ApiKey.objects.get(prefix=raw[3:11])
    r = act(admin_client, "roll_keys", key)
    shown = page_keys(r)
    assert len(shown) == 1 and f"replacing {key.prefix}" in r.content.decode()
    new = ApiKey.objects.get(prefix=shown[0][3:11])
    assert (new.tenant_id, new.scope) == (t.pk, key.scope)
    assert ApiKey.objects.get(pk=key.pk).expires_at is not None
    assert works(shown[0]) and works(raw)  # both, during the grace period


def test_the_roll_action_skips_a_revoked_key(admin_client, tenant):
    t, raw = tenant
    key = ApiKey.objects.get(prefix=raw[3:11])
    act(admin_client, "revoke_keys", key)
    r = act(admin_client, "roll_keys", key)
    assert r.status_code == 200 and page_keys(r) == []
    assert ApiKey.objects.filter(tenant=t).count() == 1 and not works(raw)


def test_it_creates_a_tenant_with_its_state(admin_client):
    r = admin_client.post("/admin/tenants/tenant/add/", {
        "slug": "from-admin", "name": "From admin", "dim": 16, "metric": "l2", "is_active": "on",
        "api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0",
    })
    assert r.status_code == 302, r.content
    t = Tenant.objects.get(slug="from-admin")
    assert (t.dim, t.metric) == (16, "l2") and t.state.episode_count == 0


def test_it_keeps_dim_and_metric_fixed_once_the_tenant_exists(admin_client, tenant):
    t, _ = tenant
    r = admin_client.post(f"/admin/tenants/tenant/{t.pk}/change/", {
        "name": "Acme Inc", "dim": 4, "metric": "dot", "slug": "renamed", "is_active": "on",
        "api_keys-TOTAL_FORMS": "1", "api_keys-INITIAL_FORMS": "1",
        "api_keys-0-id": ApiKey.objects.get(tenant=t).pk, "api_keys-0-tenant": t.pk,
    })
    assert r.status_code == 302, r.content
    t.refresh_from_db()
    assert (t.name, t.slug, t.dim, t.metric) == ("Acme Inc", "acme", 8, "cosine")


def test_its_tenant_list_counts_each_tenants_episodes(admin_client, tenant, other_tenant):
    html = admin_client.get("/admin/tenants/tenant/").content.decode()
    rows = dict(re.findall(r'<a href="/admin/tenants/tenant/\d+/change/">([^<]+)</a>.*?field-episodes">(\d+)<',
                           html, re.S))
    assert rows == {"acme": "0", "rival": "1"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_sweep_from_requests")
def test_admin_roll_action(tenant, admin_client, capsys):
    _, raw = tenant
    prefix = raw[3:11]
    key = ApiKey.objects.get(prefix=prefix)
    r = admin_client.post("/admin/tenants/apikey/", {"action": "roll_keys", "_selected_action": [key.pk]},
                          follow=True)
    assert r.status_code == 200
    keys = ApiKey.objects.filter(tenant=key.tenant)
    assert keys.count() == 2
    key.refresh_from_db()
    assert key.expires_at is not None
    new = keys.exclude(pk=key.pk).get()
    assert new.scope == key.scope and new.expires_at is None
    assert f"replacing {prefix}" in r.content.decode()

