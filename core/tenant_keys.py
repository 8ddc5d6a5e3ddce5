"""Primary keys that lead with the tenant: the shape a distributed PostgreSQL (Citus) requires of a
table distributed by tenant_id, whose primary and unique keys must contain that column
(docs/scaling.md). Django keeps a single-column primary key in its model state (the surrogate id,
still filled by its identity sequence, so still unique); only the database's PRIMARY KEY constraint
changes, by these migration helpers. Why not Django's CompositePrimaryKey: docs/design.md, Many tenants.

Only PostgreSQL changes: SQLite is the single-node development database and never distributed."""

from __future__ import annotations


def _primary_key(schema_editor, table: str) -> tuple[str, list[str]] | None:
    """The name and columns (in order) of `table`'s primary key constraint, or None."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.conname, array_agg(a.attname ORDER BY k.ord) FROM pg_constraint c "
            "CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
            "WHERE c.conrelid = %s::regclass AND c.contype = 'p' GROUP BY c.conname",
            [table],
        )
        row = cursor.fetchone()
    return None if row is None else (row[0], list(row[1]))


def set_primary_key(schema_editor, table: str, columns: list[str]) -> None:
    """Make `columns` the PRIMARY KEY of `table` (PostgreSQL; elsewhere nothing). The rows stay as
    they are: one ALTER TABLE drops the old constraint and builds the new one's index."""
    if schema_editor.connection.vendor != "postgresql":
        return
    current = _primary_key(schema_editor, table)
    if current is not None and current[1] == columns:
        return
    q = schema_editor.quote_name
    name = current[0] if current else f"{table}_pkey"
    drop = f"DROP CONSTRAINT {q(current[0])}, " if current else ""
    schema_editor.execute(
        f"ALTER TABLE {q(table)} {drop}ADD CONSTRAINT {q(name)} PRIMARY KEY ({', '.join(q(c) for c in columns)})")


def primary_keys_operation(tables: dict[str, tuple[list[str], list[str]]]):
    """A RunPython operation setting each table's primary key: {table: (new columns, old columns)}."""
    from django.db import migrations

    def forward(apps, schema_editor):
        for table, (new, _old) in tables.items():
            set_primary_key(schema_editor, table, new)

    def backward(apps, schema_editor):
        for table, (_new, old) in tables.items():
            set_primary_key(schema_editor, table, old)

    return migrations.RunPython(forward, backward)
