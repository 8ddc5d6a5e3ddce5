"""tenants/services.py: creating tenants, issuing, revoking and rolling keys; every refusal names its
field and changes nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import Conflict, InvalidInput, NotFound
from tenants.keys import verify
from tenants.models import ApiKey, Tenant
from tenants.services import key_issue, key_revoke, key_roll, tenant_create, tenant_get_or_create_default

pytestmark = pytest.mark.django_db


def refused(error: type[Exception], field: str, **kwargs) -> str:
    """tenant_create(**kwargs) raises `error` whose message starts with the field; nothing is created."""
    before = Tenant.objects.count()
    with pytest.raises(error) as caught:
        tenant_create(**kwargs)
    assert str(caught.value).startswith(f"{field}:"), str(caught.value)
    assert Tenant.objects.count() == before
    return str(caught.value)


# ----- tenant_create -----
def test_it_creates_a_tenant_with_its_state(settings):
    t = tenant_create(slug="new-co", dim=16, metric="l2", rate_limit=5, max_episodes=100, default_ttl_secs=60)
    t = Tenant.objects.get(pk=t.pk)
    assert (t.slug, t.name, t.dim, t.metric, t.rate_limit, t.max_episodes, t.default_ttl_secs, t.is_active) == (
        "new-co", "new-co", 16, "l2", 5, 100, 60, True)
    assert t.state.episode_count == 0


def test_it_takes_the_default_dim_from_the_setting(settings):
    settings.AGENT_MEM_DIM = 12
    assert tenant_create(slug="plain").dim == 12


@pytest.mark.parametrize("slug", ["", "Acme", "-acme", "acme_co", "acme co", "acmé", "a" * 64, "acme\n", " acme"])
def test_it_rejects_a_slug_outside_the_pattern(slug):
    refused(InvalidInput, "slug", slug=slug, dim=8)


@pytest.mark.parametrize("slug", ["a", "0", "acme-2", "a" * 63])
def test_it_accepts_a_slug_inside_the_pattern(slug):
    assert tenant_create(slug=slug, dim=8).slug == slug


def test_it_rejects_a_taken_slug_with_a_conflict(tenant):
    message = refused(Conflict, "slug", slug="acme", dim=8)
    assert "already exists" in message
    assert Tenant.objects.get(slug="acme").dim == 8  # the first one is untouched


@pytest.mark.parametrize("dim", [0, -1, 65537])
def test_it_rejects_a_dim_out_of_range(dim):
    refused(InvalidInput, "dim", slug="x", dim=dim)


def test_it_accepts_the_dim_bounds():
    assert tenant_create(slug="one", dim=1).dim == 1
    assert tenant_create(slug="big", dim=65536).dim == 65536


@pytest.mark.parametrize("metric", ["cosinus", "", "L2", "euclidean"])
def test_it_rejects_an_unknown_metric(metric):
    message = refused(InvalidInput, "metric", slug="x", dim=8, metric=metric)
    assert "cosine, l2, dot" in message


@pytest.mark.parametrize("ttl", [0, -5])
def test_it_rejects_a_default_ttl_below_one_second(ttl):
    refused(InvalidInput, "default_ttl_secs", slug="x", dim=8, default_ttl_secs=ttl)


@pytest.mark.parametrize("rate_limit", [0, -1])
def test_it_rejects_a_rate_limit_below_one(rate_limit):
    refused(InvalidInput, "rate_limit", slug="x", dim=8, rate_limit=rate_limit)


def test_it_rejects_a_negative_quota():
    refused(InvalidInput, "max_episodes", slug="x", dim=8, max_episodes=-1)


def test_it_rejects_a_name_longer_than_the_column():
    refused(InvalidInput, "name", slug="x", dim=8, name="n" * 201)


def test_it_creates_nothing_when_the_tenant_is_refused():
    with pytest.raises(InvalidInput):
        tenant_create(slug="x", dim=8, metric="nope")
    assert not Tenant.objects.filter(slug="x").exists()


# ----- tenant_get_or_create_default -----
def test_it_creates_the_default_tenant_once(settings):
    settings.AGENT_MEM_DIM = 8
    first = tenant_get_or_create_default()
    again = tenant_get_or_create_default()
    assert first.pk == again.pk and first.slug == "default" and first.dim == 8
    assert Tenant.objects.filter(slug="default").count() == 1
    assert again.state.episode_count == 0


# ----- key_issue -----
def test_it_issues_a_key_whose_hash_alone_is_stored(tenant, settings, tmp_path):
    settings.AGENT_MEM_AUDIT_LOG = str(tmp_path / "audit.jsonl")
    t, _ = tenant
    api_key, raw = key_issue(tenant=t, name="ci", scope="read")
    stored = ApiKey.objects.get(pk=api_key.pk)
    assert (stored.tenant_id, stored.name, stored.scope, stored.prefix) == (t.pk, "ci", "read", raw[3:11])
    assert verify(raw, stored.key_hash) and raw not in stored.key_hash
    log = (tmp_path / "audit.jsonl").read_text()
    issued = [json.loads(line) for line in log.splitlines()]
    assert [(e["op"], e["tenant_id"], e["key_prefix"]) for e in issued] == [("key_issued", "acme", raw[3:11])]
    assert raw[12:] not in log


def test_it_issues_write_scope_keys_by_default(tenant):
    t, _ = tenant
    assert key_issue(tenant=t)[0].scope == "write"


def test_it_rejects_an_unknown_scope(tenant):
    t, _ = tenant
    before = ApiKey.objects.count()
    with pytest.raises(InvalidInput, match=r"^scope: must be one of read, write, admin"):
        key_issue(tenant=t, scope="root")
    assert ApiKey.objects.count() == before


# ----- key_revoke -----
def test_it_revokes_a_key(tenant):
    _, raw = tenant
    revoked = key_revoke(prefix=raw[3:11])
    assert revoked.revoked_at is not None
    assert not ApiKey.objects.get(prefix=raw[3:11]).is_usable()


def test_revoking_twice_keeps_the_first_revocation_time(tenant):
    _, raw = tenant
    first = key_revoke(prefix=raw[3:11]).revoked_at
    assert key_revoke(prefix=raw[3:11]).revoked_at == first
    assert ApiKey.objects.get(prefix=raw[3:11]).revoked_at == first


def test_it_refuses_to_revoke_an_unknown_prefix(tenant):
    with pytest.raises(NotFound, match="zzzzzzzz"):
        key_revoke(prefix="zzzzzzzz")


def test_revoking_a_key_leaves_the_other_tenants_keys_alone(tenant, other_tenant):
    _, raw = tenant
    _, rival_raw = other_tenant
    key_revoke(prefix=raw[3:11])
    assert ApiKey.objects.get(prefix=rival_raw[3:11]).is_usable()


# ----- key_roll -----
def test_it_rolls_a_key_into_a_new_one_of_the_same_tenant_and_scope(tenant):
    t, _ = tenant
    old, old_raw = key_issue(tenant=t, name="ci", scope="read")
    new, raw = key_roll(prefix=old.prefix, grace_hours=2)
    assert raw != old_raw and new.prefix == raw[3:11]
    assert (new.tenant_id, new.name, new.scope, new.expires_at) == (t.pk, "ci", "read", None)
    old.refresh_from_db()
    assert old.revoked_at is None
    expected = timezone.now() + timedelta(hours=2)
    assert abs((old.expires_at - expected).total_seconds()) < 5


def test_it_keeps_an_earlier_expiry_of_the_rolled_key(tenant):
    t, _ = tenant
    soon = timezone.now() + timedelta(minutes=10)
    old, _ = key_issue(tenant=t, expires_at=soon)
    new, _ = key_roll(prefix=old.prefix, grace_hours=24)
    old.refresh_from_db()
    assert old.expires_at == soon and new.expires_at == soon


def test_it_refuses_a_negative_grace_period(tenant):
    _, raw = tenant
    with pytest.raises(InvalidInput, match=r"^grace_hours:"):
        key_roll(prefix=raw[3:11], grace_hours=-1)
    assert ApiKey.objects.filter(tenant__slug="acme").count() == 1


def test_it_refuses_to_roll_an_unknown_key(tenant):
    with pytest.raises(NotFound, match="zzzzzzzz"):
        key_roll(prefix="zzzzzzzz")


def test_it_refuses_to_roll_a_revoked_or_expired_key(tenant):
    t, raw = tenant
    key_revoke(prefix=raw[3:11])
    expired, _ = key_issue(tenant=t, expires_at=timezone.now() - timedelta(seconds=1))
    for prefix in (raw[3:11], expired.prefix):
        with pytest.raises(NotFound, match="no usable key"):
            key_roll(prefix=prefix)
    assert ApiKey.objects.filter(tenant=t).count() == 2  # no new key


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_sweep_from_requests")
def test_default_ttl_must_be_positive(db):
    from core.errors import InvalidInput
    from tenants.services import tenant_create

    with pytest.raises(InvalidInput, match="default_ttl_secs"):
        tenant_create(slug="bad-ttl", dim=4, default_ttl_secs=0)

