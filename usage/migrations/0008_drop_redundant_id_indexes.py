"""Drops the second btree PostgreSQL keeps on the usage log's primary key (and on its
content's): Django adds a `varchar_pattern_ops` index beside every indexed text column, for
LIKE 'prefix%' queries, which nothing runs on these ids. It doubled the index writes of
every ingested row, and the planner used it for the ingest's primary-key lookups."""

from django.db import migrations

# (table, column) whose `_like` index goes.
COLUMNS = [("usage_usagelog", "id"), ("usage_logcontent", "log_id")]


def _like_indexes(cursor, table: str, column: str) -> list[str]:
    cursor.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s "
        "AND indexname LIKE %s AND indexdef LIKE %s",
        [table, f"{table}_{column}_%_like", "%varchar_pattern_ops%"],
    )
    return [row[0] for row in cursor.fetchall()]


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, column in COLUMNS:
            for name in _like_indexes(cursor, table, column):
                cursor.execute(f'DROP INDEX IF EXISTS "{name}"')


def restore(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, column in COLUMNS:
            cursor.execute(f'CREATE INDEX IF NOT EXISTS "{table}_{column}_like" ON "{table}" ("{column}" varchar_pattern_ops)')


class Migration(migrations.Migration):
    dependencies = [("usage", "0007_log_content")]

    operations = [migrations.RunPython(drop, restore)]
