"""A database filled by the code as it was before the tenant-leading primary keys migrates with no
loss (the row counts and a sample bit-exact) and serves stores, queries and deletes afterwards;
on PostgreSQL its primary keys then lead with tenant_id (docs/scaling.md). SQLite and PostgreSQL
(DATABASE_URL) both run it."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core import counters, usage
from core.models import RateCounter, UsageMinute
from episodes.models import Episode, Tombstone
from episodes.services import episode_delete, episodes_store
from tenants.services import key_issue, tenant_create

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("episodes", "0005_episode_text"), ("core", "0002_usage_user")]
TENANT_TABLES = {Episode: ["tenant_id", "pk_id"], Tombstone: ["tenant_id", "id"],
                 RateCounter: ["tenant_id", "id"], UsageMinute: ["tenant_id", "id"]}


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def latest() -> list[tuple[str, str]]:
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


def primary_key(table: str) -> list[str]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    (columns,) = [c["columns"] for c in found.values() if c["primary_key"]]
    return columns


def snapshot() -> dict:
    """Every row of every tenant-owned table, as the database returns it (bytes stay bytes)."""
    out = {}
    for model in TENANT_TABLES:
        fields = [f.column for f in model._meta.concrete_fields]
        out[model._meta.db_table] = sorted(
            (tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
             for row in model.objects.order_by().values_list(*fields)), key=repr)
    return out


def fill() -> tuple:
    rng = np.random.default_rng(7)
    tenants = []
    for slug in ("before-a", "before-b"):
        tenant = tenant_create(slug=slug, dim=8)
        key_issue(tenant=tenant, scope="admin")
        episodes = [{"task_id": f"t{i % 3}", "state_embedding": rng.standard_normal(8).astype(np.float32),
                     "reward": float(i), "tags": ["x"] if i % 2 else [], "metadata": {"i": i},
                     "ttl_secs": 3600 if i % 5 == 0 else None} for i in range(40)]
        result = episodes_store(tenant=tenant, episodes=episodes)
        for eid in result.ids[:3]:
            episode_delete(tenant=tenant, episode_id=eid)
        counters.db_hit(tenant_id=tenant.pk, window_no=1, limit=10)
        usage.record_request(tenant_id=tenant.pk, query=True, stores=40)
        tenants.append(tenant)
    return tuple(tenants)


def test_a_database_of_the_previous_schema_migrates_with_no_loss(api):
    migrate(BEFORE)
    try:
        first, second = fill()
        before = snapshot()
        assert {t: len(rows) for t, rows in before.items()} == {
            "episodes_episode": 74, "episodes_tombstone": 6, "ops_rate_counter": 2, "ops_usage_minute": 2}
        migrate(latest())
        assert snapshot() == before  # every row, every column, embeddings bit-exact
        if connection.vendor == "postgresql":
            for model, columns in TENANT_TABLES.items():
                assert primary_key(model._meta.db_table) == columns
        # The core checks on the migrated database: store, query, delete through the API.
        _, raw = key_issue(tenant=first, scope="admin")
        client = api.as_key(raw)
        probe = Episode.objects.filter(tenant=first).order_by("seq").last()
        vector = np.frombuffer(bytes(probe.embedding), dtype="<f4").tolist()
        response = client.post("/v1/query", {"query_embedding": vector, "top_k": 1}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["episodes"][0]["id"] == str(probe.id)
        stored = client.post("/v1/episodes", {"task_id": "after", "state_embedding": vector, "reward": 1.0},
                             format="json")
        assert stored.status_code == 201, stored.content
        new_id = stored.json()["id"]
        assert client.delete(f"/v1/episodes/{new_id}").status_code in (200, 204)
        assert client.get(f"/v1/episodes/{new_id}").status_code == 404
        assert Episode.objects.filter(tenant=second).count() == 37
        assert not Episode.objects.filter(id=uuid.UUID(new_id)).exists()
    finally:
        migrate(latest())


def test_the_migration_reverses(transactional_db):
    migrate(BEFORE)
    try:
        if connection.vendor == "postgresql":
            assert primary_key("episodes_episode") == ["pk_id"]
            assert primary_key("ops_usage_minute") == ["id"]
        migrate(latest())
        migrate(BEFORE)
        if connection.vendor == "postgresql":
            assert primary_key("episodes_tombstone") == ["id"]
    finally:
        migrate(latest())
