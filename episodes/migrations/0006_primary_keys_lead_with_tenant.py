"""Episodes and tombstones: PRIMARY KEY (tenant_id, <surrogate id>) on PostgreSQL, as a table
distributed by tenant requires (docs/scaling.md). The model state keeps its single-column primary
key (core/tenant_keys.py says why)."""

from django.db import migrations

from core.tenant_keys import primary_keys_operation


class Migration(migrations.Migration):

    dependencies = [
        ('episodes', '0005_episode_text'),
    ]

    operations = [
        primary_keys_operation({
            'episodes_episode': (['tenant_id', 'pk_id'], ['pk_id']),
            'episodes_tombstone': (['tenant_id', 'id'], ['id']),
        }),
    ]
