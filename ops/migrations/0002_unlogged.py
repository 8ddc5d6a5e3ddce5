"""On PostgreSQL the per-request counter tables skip the WAL (docs/api.md §7: per-request counters
belong in an UNLOGGED table). Other databases keep ordinary tables."""

from django.db import migrations

TABLES = ("ops_rate_counter", "ops_usage_minute")


def set_unlogged(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"ALTER TABLE {schema_editor.quote_name(table)} SET UNLOGGED")


def set_logged(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"ALTER TABLE {schema_editor.quote_name(table)} SET LOGGED")


class Migration(migrations.Migration):
    dependencies = [("ops", "0001_counters")]
    operations = [migrations.RunPython(set_unlogged, set_logged)]
