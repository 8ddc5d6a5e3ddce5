"""RateCounter and UsageMinute moved here from the ops app: the tables stay as they are (state only)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('tenants', '0001_initial'),
        ('ops', '0002_unlogged'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
                migrations.CreateModel(
                    name='RateCounter',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('window_no', models.BigIntegerField()),
                        ('count', models.IntegerField(default=0)),
                        ('tenant', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='tenants.tenant')),
                    ],
                    options={
                        'db_table': 'ops_rate_counter',
                        'constraints': [models.UniqueConstraint(fields=('tenant', 'window_no'), name='rate_counter_tenant_window')],
                    },
                ),
                migrations.CreateModel(
                    name='UsageMinute',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('minute', models.BigIntegerField()),
                        ('slot', models.IntegerField()),
                        ('requests', models.IntegerField(default=0)),
                        ('stores', models.IntegerField(default=0)),
                        ('queries', models.IntegerField(default=0)),
                        ('tenant', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='tenants.tenant')),
                    ],
                    options={
                        'db_table': 'ops_usage_minute',
                        'indexes': [models.Index(fields=['minute'], name='usage_minute_minute')],
                        'constraints': [models.UniqueConstraint(fields=('tenant', 'minute', 'slot'), name='usage_minute_tenant_minute_slot')],
                    },
                ),
        ]),
    ]
