"""User-bound API keys and tenant signing keys (docs/api.md §2)."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0003_tenant_embedder'),
    ]

    operations = [
        migrations.AddField(
            model_name='apikey',
            name='user_id',
            field=models.CharField(blank=True, help_text="Empty: the key acts on every user's episodes.", max_length=256, null=True),
        ),
        migrations.CreateModel(
            name='SigningKey',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kid', models.CharField(editable=False, max_length=32, unique=True)),
                ('salt', models.CharField(editable=False, max_length=64)),
                ('name', models.CharField(blank=True, max_length=200)),
                ('created', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='signing_keys', to='tenants.tenant')),
            ],
            options={
                'ordering': ['-created'],
            },
        ),
    ]
