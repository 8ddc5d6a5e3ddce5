"""Packed index images of small tenants (episodes/images.py). On PostgreSQL their bytes are stored
out of line uncompressed (STORAGE EXTERNAL): float32 rows do not compress, and a read then costs
no decompression."""

import django.db.models.deletion
from django.db import migrations, models


def external(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('ALTER TABLE "episodes_indeximage" ALTER COLUMN "data" SET STORAGE EXTERNAL')


class Migration(migrations.Migration):

    dependencies = [
        ('episodes', '0006_primary_keys_lead_with_tenant'),
        ('tenants', '0003_tenant_embedder'),
    ]

    operations = [
        migrations.CreateModel(
            name='IndexImage',
            fields=[
                ('tenant', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True,
                                                related_name='+', serialize=False, to='tenants.tenant')),
                ('generation', models.BigIntegerField()),
                ('version', models.BigIntegerField()),
                ('data', models.BinaryField()),
            ],
        ),
        migrations.RunPython(external, migrations.RunPython.noop),
    ]
