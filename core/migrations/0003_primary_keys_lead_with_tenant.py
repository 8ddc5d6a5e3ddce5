"""Rate-limit and usage counters: PRIMARY KEY (tenant_id, id) on PostgreSQL, as a table distributed
by tenant requires (docs/scaling.md). The model state keeps its single-column primary key
(core/tenant_keys.py says why)."""

from django.db import migrations

from core.tenant_keys import primary_keys_operation


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0002_usage_user'),
        ('ops', '0003_counters_moved_to_core'),
    ]

    operations = [
        primary_keys_operation({
            'ops_rate_counter': (['tenant_id', 'id'], ['id']),
            'ops_usage_minute': (['tenant_id', 'id'], ['id']),
        }),
    ]
