"""Episodes carry optional text, searched by keyword (docs/api.md §3)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('episodes', '0004_tenantstate_moved_to_tenants'),
    ]

    operations = [
        migrations.AddField(
            model_name='episode',
            name='text',
            field=models.TextField(blank=True, null=True),
        ),
    ]
