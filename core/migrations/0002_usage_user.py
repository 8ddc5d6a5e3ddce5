"""Usage per end user too (docs/api.md §2): a user_id column, part of the upsert's unique key. Until
every worker runs the new code, an old worker's upsert finds no matching unique index and skips its
usage row (it warns; the request itself is served)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0001_initial'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='usageminute',
            name='usage_minute_tenant_minute_slot',
        ),
        migrations.AddField(
            model_name='usageminute',
            name='user_id',
            field=models.CharField(blank=True, db_default='', default='', max_length=256),
        ),
        migrations.AddConstraint(
            model_name='usageminute',
            constraint=models.UniqueConstraint(fields=('tenant', 'minute', 'slot', 'user_id'), name='usage_minute_tenant_minute_slot_user'),
        ),
    ]
