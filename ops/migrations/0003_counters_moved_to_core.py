"""RateCounter and UsageMinute now belong to the core app (core/migrations/0001): state only."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('ops', '0002_unlogged'),
        ('core', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.DeleteModel(name='RateCounter'),
            migrations.DeleteModel(name='UsageMinute'),
        ]),
    ]
