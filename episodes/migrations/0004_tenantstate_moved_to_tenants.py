"""TenantState now belongs to the tenants app (tenants/migrations/0002): state only."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('episodes', '0003_tenant_indexes_not_repeated'),
        ('tenants', '0002_tenantstate'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.DeleteModel(name='TenantState'),
        ]),
    ]
