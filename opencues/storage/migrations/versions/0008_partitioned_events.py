"""PostgreSQL: events in monthly range partitions on timestamp, plus a default partition

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

The table is rebuilt in place from whatever it holds at this point: its columns, defaults and
constraints are copied with ``LIKE``, its indexes re-created from their stored definitions, so
columns and indexes added by earlier migrations carry over without being listed here. The primary
key becomes ``(id, timestamp)`` (a partitioned table's unique keys must hold the partition key);
ids stay as they were and the id sequence carries on. Every month holding events gets its
partition (the newest ``MIGRATION_MAX_MONTHS`` of them; older months' rows go to the default
partition, which later upkeep may split), as do the months the workers would create ahead.
SQLite keeps its single table.
"""
from alembic import op
from sqlalchemy import text

from opencues import event_partitions, timestamps
from opencues.settings import EVENT_PARTITION_MONTHS_AHEAD

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

MIGRATION_MAX_MONTHS = 240


def _indexes(conn, table: str, primary_key: str | None) -> list[str]:
    """``CREATE INDEX`` statements of ``table``'s indexes but its primary key's, naming ``events``."""
    rows = conn.execute(text(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = :t ORDER BY indexname"
    ), {"t": table}).all()  # fmt: skip
    statements = []
    for name, definition in rows:
        if name == primary_key:
            continue
        # "CREATE INDEX ix ON [ONLY] public.<table> USING …": the same index on the new table.
        statements.append(definition.replace(" ON ONLY ", " ON ", 1))
    return statements


def _primary_key(conn) -> str | None:
    return conn.execute(text("SELECT conname FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = 'p'")).scalar()


def _rebuild(conn, *, partitioned: bool) -> None:
    """Move ``events`` into a new table (partitioned or plain), keeping columns, rows, ids,
    indexes and the id sequence."""
    primary_key = _primary_key(conn) or 'events_pkey'
    indexes = _indexes(conn, 'events', primary_key)
    sequence = conn.execute(text("SELECT pg_get_serial_sequence('events', 'id')")).scalar()
    identity = conn.execute(text(
        "SELECT attidentity FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'id'"
    )).scalar()  # fmt: skip
    conn.execute(text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
    conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))  # the index builds below
    conn.execute(text("ALTER TABLE events RENAME TO events_before_0008"))
    like = "LIKE events_before_0008 INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS INCLUDING IDENTITY"
    conn.execute(text(f'CREATE TABLE events ({like})' + (' PARTITION BY RANGE ("timestamp")' if partitioned else '')))
    if partitioned:
        conn.execute(text(f"CREATE TABLE {event_partitions.DEFAULT_PARTITION} PARTITION OF events DEFAULT"))
        for partition in _migration_partitions(conn):
            conn.execute(text(
                f"CREATE TABLE {partition.name} PARTITION OF events FOR VALUES FROM ({partition.lower_ms}) TO ({partition.upper_ms})"
            ))  # fmt: skip
    overriding = " OVERRIDING SYSTEM VALUE" if identity == "a" else ""
    # One pass over the old table; PostgreSQL routes each row to its partition.
    conn.execute(text(f"INSERT INTO events{overriding} SELECT * FROM events_before_0008"))
    if sequence is not None and identity in ("a", "d"):  # a new identity sequence: carry on numbering
        last_value, is_called = conn.execute(text(f"SELECT last_value, is_called FROM {sequence}")).one()
        conn.execute(text("SELECT setval(pg_get_serial_sequence('events', 'id'), :v, :c)"), {"v": last_value, "c": is_called})
    elif sequence is not None:  # a serial column: the new table's default already uses it
        conn.execute(text(f"ALTER SEQUENCE {sequence} OWNED BY events.id"))
    conn.execute(text("DROP TABLE events_before_0008"))
    for statement in indexes:
        conn.execute(text(statement))
    key = '(id, "timestamp")' if partitioned else '(id)'
    conn.execute(text(f"ALTER TABLE events ADD CONSTRAINT {primary_key} PRIMARY KEY {key}"))
    if partitioned:
        event_partitions.name_every_partition_index(conn)
    conn.execute(text("ANALYZE events"))


def _migration_partitions(conn) -> list[event_partitions.Partition]:
    """Month partitions for the months holding events (the newest ``MIGRATION_MAX_MONTHS``) and
    for the current month and those the workers keep ready ahead."""
    first_days = conn.execute(text(  # the first day of each month holding events (floor: before 1970 too)
        'SELECT DISTINCT date_trunc(\'month\', to_timestamp(floor("timestamp" / 86400000.0) * 86400) AT TIME ZONE \'UTC\') '
        'FROM events_before_0008'
    )).scalars().all()  # fmt: skip
    months = {(day.year, day.month) for day in first_days}
    year, month = event_partitions.month_of(timestamps.now_ms())
    for ahead in range(EVENT_PARTITION_MONTHS_AHEAD + 1):
        months.add((year + (month - 1 + ahead) // 12, (month - 1 + ahead) % 12 + 1))
    return [event_partitions.month_partition(y, m) for y, m in sorted(months)[-MIGRATION_MAX_MONTHS:]]


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != 'postgresql' or event_partitions.is_partitioned(conn):
        return
    _rebuild(conn, partitioned=True)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != 'postgresql' or not event_partitions.is_partitioned(conn):
        return
    _rebuild(conn, partitioned=False)
