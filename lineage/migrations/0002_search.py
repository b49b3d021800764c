"""Full-text search indexes for GET /api/v1/search (PostgreSQL only; a no-op elsewhere).

The indexed expressions must stay identical to DATASET_DOCUMENT, JOB_DOCUMENT and
NAMESPACE_DOCUMENT in lineage/search.py (tests/test_read_api.py checks that they do).
"""

from django.db import migrations

DATASET_DOCUMENT = (
    "to_tsvector('simple'::regconfig, regexp_replace("
    # Bounded: a tsvector holds at most 1 MB, and a dataset may have a schema of 100k+ fields.
    "coalesce(\"lineage_dataset\".\"name\", '') || ' ' || left(coalesce(\"lineage_dataset\".\"description\", ''), 20000) "
    "|| ' ' || left(coalesce(jsonb_path_query_array(\"lineage_dataset\".\"fields\", '$[0 to 999].name')::text, ''), 100000), "
    "'[^[:alnum:]]+', ' ', 'g'))"
)
JOB_DOCUMENT = (
    "to_tsvector('simple'::regconfig, regexp_replace("
    'coalesce("lineage_job"."name", \'\') || \' \' || coalesce("lineage_job"."description", \'\'), '
    "'[^[:alnum:]]+', ' ', 'g'))"
)
NAMESPACE_DOCUMENT = (
    "to_tsvector('simple'::regconfig, regexp_replace(coalesce(\"lineage_namespace\".\"name\", ''), "
    "'[^[:alnum:]]+', ' ', 'g'))"
)


def _unqualified(document: str, table: str) -> str:
    # Index expressions name columns without their table.
    return document.replace(f'"{table}".', "")


FORWARD = [
    f"CREATE INDEX IF NOT EXISTS lineage_dataset_search_idx ON lineage_dataset "
    f"USING gin (({_unqualified(DATASET_DOCUMENT, 'lineage_dataset')}))",
    f"CREATE INDEX IF NOT EXISTS lineage_job_search_idx ON lineage_job "
    f"USING gin (({_unqualified(JOB_DOCUMENT, 'lineage_job')}))",
    f"CREATE INDEX IF NOT EXISTS lineage_namespace_search_idx ON lineage_namespace "
    f"USING gin (({_unqualified(NAMESPACE_DOCUMENT, 'lineage_namespace')}))",
]
BACKWARD = [
    "DROP INDEX IF EXISTS lineage_dataset_search_idx",
    "DROP INDEX IF EXISTS lineage_job_search_idx",
    "DROP INDEX IF EXISTS lineage_namespace_search_idx",
]


class PostgreSQLOnly(migrations.RunSQL):
    """RunSQL that runs on PostgreSQL and does nothing on other databases (SQLite)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [("lineage", "0001_initial")]

    operations = [PostgreSQLOnly(sql=FORWARD, reverse_sql=BACKWARD)]
