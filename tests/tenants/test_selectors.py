"""tenants/selectors.py: the key lookup by prefix, with its tenant and the tenant's state, in one
statement (two on a distributed database: AGENT_MEM_DISTRIBUTED), giving the same values the ORM
would. Every test runs both ways."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tenants.models import ApiKey, Tenant
from tenants.selectors import key_with_tenant
from tenants.services import key_issue, key_revoke

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, params=[False, True], ids=["one-node", "distributed"])
def distributed(request, settings) -> bool:
    settings.AGENT_MEM_DISTRIBUTED = request.param
    return request.param


def test_on_a_distributed_database_the_state_is_read_by_its_tenant_id(tenant, distributed):
    from django.db import connection

    t, raw = tenant
    seen = []

    def spy(execute, sql, params, many, context):
        seen.append((sql, list(params)))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        assert key_with_tenant(prefix=raw[3:11]).tenant.state.episode_count == 0
    if distributed:
        (lookup, _), (state, params) = seen
        assert "tenantstate" not in lookup
        assert "tenants_tenantstate" in state and "tenant_id" in state and params == [t.pk]
    else:
        (lookup, _), = seen
        assert "tenants_tenantstate" in lookup


def test_it_finds_nothing_for_an_unknown_prefix(tenant):
    assert key_with_tenant(prefix="zzzzzzzz") is None


def test_it_loads_the_key_its_tenant_and_state_in_one_query(
        tenant, distributed, django_assert_max_num_queries, django_assert_num_queries):
    t, raw = tenant
    # At most: on PostgreSQL the statement is prepared on the raw connection, out of Django's sight.
    # Distributed: two, the state's by its tenant id.
    with django_assert_max_num_queries(2 if distributed else 1):
        found = key_with_tenant(prefix=raw[3:11])
    with django_assert_num_queries(0):  # tenant and state came with the key
        assert found.tenant.slug == "acme"
        assert found.tenant.state.episode_count == 0
    assert found.pk == ApiKey.objects.get(prefix=raw[3:11]).pk and found.tenant.pk == t.pk


def test_it_gives_the_same_field_values_as_the_orm(tenant):
    t, _ = tenant
    expires = timezone.now() + timedelta(days=3, microseconds=123)
    issued, _ = key_issue(tenant=t, name="ci", scope="read", expires_at=expires)
    key_revoke(prefix=issued.prefix)
    Tenant.objects.filter(pk=t.pk).update(is_active=False, rate_limit=9, max_episodes=50, default_ttl_secs=60)
    found = key_with_tenant(prefix=issued.prefix)
    stored = ApiKey.objects.select_related("tenant").get(pk=issued.pk)
    for field in ApiKey._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(stored, field.attname), field.name
    for field in Tenant._meta.concrete_fields:
        assert getattr(found.tenant, field.attname) == getattr(stored.tenant, field.attname), field.name
    assert found.expires_at == expires and found.expires_at.tzinfo is not None
    assert found.tenant.is_active is False  # a bool, not SQLite's 0
    assert not found.is_usable()


def test_it_gives_each_key_its_own_tenant_and_state(tenant, other_tenant):
    _, raw = tenant
    _, rival_raw = other_tenant
    mine = key_with_tenant(prefix=raw[3:11])
    theirs = key_with_tenant(prefix=rival_raw[3:11])
    assert (mine.tenant.slug, mine.tenant.state.episode_count) == ("acme", 0)
    assert (theirs.tenant.slug, theirs.tenant.state.episode_count) == ("rival", 1)


def test_it_reads_the_state_as_it_is_now(tenant):
    t, raw = tenant
    type(t.state).objects.filter(tenant=t).update(episode_count=7)
    assert key_with_tenant(prefix=raw[3:11]).tenant.state.episode_count == 7


def test_it_still_finds_the_key_of_a_tenant_without_a_state_row(tenant):
    t, raw = tenant
    t.state.delete()
    found = key_with_tenant(prefix=raw[3:11])
    assert found is not None and found.tenant.slug == "acme"
