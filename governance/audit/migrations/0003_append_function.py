"""custody_audit_append(): the PostgreSQL side of governance.audit.services.record (one round trip)."""

from django.db import migrations


def forwards(apps, schema_editor):
    from governance.audit.guards import install_append_function

    install_append_function(schema_editor)


def backwards(apps, schema_editor):
    from governance.audit.guards import remove_append_function

    remove_append_function(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_triggers")]

    operations = [migrations.RunPython(forwards, backwards)]
