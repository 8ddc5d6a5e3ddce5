"""The statement audit itself (tests/support/statement_audit.py): what counts as naming the tenant,
and that it sees every statement, the prepared ones of core/db.py included."""

from __future__ import annotations

import pytest
from django.db import connection

from core import db
from episodes.changes import _changes_sql
from episodes.selectors import _live_count_sql, _winners_sql
from tenants.models import SigningKey
from tenants.selectors import _lookup_sql, _state_sql
from tests.support.statement_audit import names_its_tenant

Q = '"episodes_episode"'


@pytest.mark.parametrize("sql", [
    f'SELECT "id" FROM {Q} WHERE {Q}."tenant_id" = %s AND "seq" > %s',
    f'DELETE FROM {Q} WHERE {Q}."tenant_id" IN (3) AND "id" = %s',
    'INSERT INTO ops_rate_counter (tenant_id, window_no, count) VALUES (%s, %s, 1) ON CONFLICT DO NOTHING',
    'SELECT 1 FROM "tenants_apikey" JOIN "tenants_tenantstate" ON "tenants_tenantstate"."tenant_id" = "x"."id"',
    'SELECT "slug" FROM "tenants_tenant"',  # not a tenant-owned table
])
def test_statements_that_name_their_tenant_pass(sql):
    assert names_its_tenant(sql)


@pytest.mark.parametrize("sql", [
    f'UPDATE {Q} SET "version" = %s WHERE {Q}."pk_id" = %s',
    f'SELECT COUNT(*) FROM {Q}',
    'DELETE FROM "ops_usage_minute" WHERE "minute" < %s',
    'INSERT INTO "episodes_tombstone" ("episode_id", "version") VALUES (%s, %s)',
    # one predicate for two tables: the second table is not named
    f'SELECT 1 FROM {Q} WHERE "tenant_id" = %s UNION ALL SELECT 1 FROM "episodes_tombstone" WHERE "version" > 1',
])
def test_statements_that_do_not_are_caught(sql):
    assert not names_its_tenant(sql)


def test_the_hot_path_statements_name_their_tenant():
    vendor = connection.vendor
    for sql in (_changes_sql(vendor), _winners_sql(vendor, 3, True), _live_count_sql(), _lookup_sql(),
                _lookup_sql(distributed=True), _lookup_sql(SigningKey, "kid"), _state_sql()):
        assert names_its_tenant(sql), sql


@pytest.mark.django_db
def test_prepared_statements_pass_through_execute_wrappers():
    seen = []

    def spy(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        assert db.fetch_one("SELECT %s + 1", [1]) == (2,)
    assert seen == ["SELECT %s + 1"]
