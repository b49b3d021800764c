"""Append-only triggers on the audit tables (PostgreSQL and SQLite); see governance/audit/guards.py.

On SQLite, any later migration that *alters* these tables rebuilds them (create, copy, drop,
rename), which drops the triggers: such a migration must run install_triggers again.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    from governance.audit.guards import install_triggers

    install_triggers(schema_editor)


def backwards(apps, schema_editor):
    from governance.audit.guards import remove_triggers

    remove_triggers(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
