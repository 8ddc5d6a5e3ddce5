"""TenantState moves here from the episodes app (it belongs with the tenant it counts for), then
its table takes this app's name: the move itself is state only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0001_initial'),
        ('episodes', '0003_tenant_indexes_not_repeated'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='TenantState',
                fields=[
                    ('tenant', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='state', serialize=False, to='tenants.tenant')),
                    ('version', models.BigIntegerField(default=0)),
                    ('generation', models.BigIntegerField(default=0)),
                    ('next_seq', models.BigIntegerField(default=0)),
                    ('episode_count', models.BigIntegerField(default=0)),
                    ('tombstone_floor', models.BigIntegerField(default=0)),
                ],
                options={'db_table': 'episodes_tenantstate'},
            ),
        ]),
        migrations.AlterModelTable(name='tenantstate', table=None),
    ]
