"""Event storage upkeep: monthly partitions on PostgreSQL, and the retention period on both databases.

On PostgreSQL ``events`` is range-partitioned on ``timestamp`` (migration 0008): one partition a
UTC calendar month, named ``events_pYYYYMM``, and ``events_default`` for every instant no month
partition covers, so an insert never fails whatever its timestamp (the API takes years
0001..9999). Workers keep partitions ready ahead of time (``ensure_partitions``: the current
month and ``event_partition_months_ahead`` more); a month that already has rows in the default
partition gets them moved into its new partition in the same transaction.

Retention (``event_retention_days``; off by default) is applied by the same periodic upkeep: on
PostgreSQL by dropping whole month partitions whose every instant is older than the cutoff (so
up to a month more than the period is kept; dropping a table is instant and leaves no bloat),
plus deleting the expired rows of the default partition; on SQLite by deleting expired events
in batches of ``RETENTION_BATCH_ROWS``, one transaction each, so writers are never held up long.

Several workers may run this at once: on PostgreSQL an advisory lock lets one do it at a time.
"""

from __future__ import annotations

import logging
import re
from datetime import date
from typing import NamedTuple

from sqlalchemy import Connection, text

from opencues import event_counts, timestamps
from opencues.storage import Database

log = logging.getLogger("opencues.event_partitions")

DEFAULT_PARTITION = "events_default"
PARTITION_NAME_RE = re.compile(r"events_p(\d{4})(\d{2})")
RETENTION_BATCH_ROWS = 10_000  # SQLite: expired events deleted per transaction
# PostgreSQL: longest wait for a table lock during upkeep. Tracks and reads queue behind a waiting
# DROP or ATTACH, so the wait is short; the upkeep tries again an hour later.
UPKEEP_LOCK_TIMEOUT_MS = 500
_UPKEEP_LOCK_ID = 0x0C0E6  # the advisory lock of partition upkeep (next to the migrations' 0x0C0E5)
_DAY_MS = 86_400_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_BOUND_RE = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


class Partition(NamedTuple):
    name: str
    lower_ms: int  # inclusive
    upper_ms: int  # exclusive


def month_start_ms(year: int, month: int) -> int:
    """Epoch milliseconds of the first instant of a UTC month (``month`` 13 is January of the next year)."""
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    if year > 9999:  # past ``date``'s range: the instant after 9999-12-31T23:59:59.999Z
        return timestamps.MAX_MS + 1
    return (date(year, month, 1).toordinal() - _EPOCH_ORDINAL) * _DAY_MS


def month_of(ms: int) -> tuple[int, int]:
    """The UTC ``(year, month)`` holding an instant."""
    day = date.fromordinal(_EPOCH_ORDINAL + ms // _DAY_MS)
    return day.year, day.month


def month_partition(year: int, month: int) -> Partition:
    return Partition(f"events_p{year:04d}{month:02d}", month_start_ms(year, month), month_start_ms(year, month + 1))


def is_partitioned(conn: Connection) -> bool:
    """Whether ``events`` is a partitioned table (PostgreSQL after migration 0008)."""
    if conn.dialect.name != "postgresql":
        return False
    relkind = conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('events')")).scalar()
    return relkind == "p"


def partitions(conn: Connection) -> list[Partition]:
    """The month partitions of ``events`` (not the default one), oldest first, bounds as stored."""
    rows = conn.execute(text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass('events')"
    )).all()  # fmt: skip
    found = []
    for name, bound in rows:
        match = _BOUND_RE.search(bound or "")
        if match:  # the default partition's bound is just DEFAULT
            found.append(Partition(name, int(match[1]), int(match[2])))
    return sorted(found, key=lambda p: p.lower_ms)


def create_partition(conn: Connection, partition: Partition) -> int:
    """Add one month partition, moving the rows the default partition holds for its range into
    it; returns how many were moved. The caller's transaction makes the move atomic: the default
    partition is locked first, so no insert can slip a row into the range meanwhile."""
    name, lower, upper = partition
    conn.execute(text(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE"))
    conn.execute(text(f"CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    in_range = f'"timestamp" >= {lower} AND "timestamp" < {upper}'
    moved = conn.execute(text(f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE {in_range} RETURNING *) "
                              f"INSERT INTO {name} SELECT * FROM moved")).rowcount  # fmt: skip
    # A CHECK matching the bounds spares ATTACH its scan of the new table; dropped once attached.
    conn.execute(text(f"ALTER TABLE {name} ADD CONSTRAINT {name}_bounds CHECK ({in_range})"))
    conn.execute(text(f"ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ({lower}) TO ({upper})"))
    conn.execute(text(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bounds"))
    name_indexes_after_parents(conn, name)
    if moved:
        log.info("partition %s created; %d events moved into it from %s", name, moved, DEFAULT_PARTITION)
    else:
        log.info("partition %s created", name)
    return moved


def name_indexes_after_parents(conn: Connection, partition: str) -> None:
    """Rename a partition's indexes ``<partition>_<parent index>`` (PostgreSQL makes up names from
    the columns, the same for ``ix_events_time`` and its partial twins): plans then say which
    index of ``schema.events`` a partition was read through."""
    rows = conn.execute(text(
        "SELECT child.relname, parent.relname FROM pg_index i JOIN pg_class child ON child.oid = i.indexrelid "
        "JOIN pg_inherits inh ON inh.inhrelid = i.indexrelid JOIN pg_class parent ON parent.oid = inh.inhparent "
        "WHERE i.indrelid = to_regclass(:partition)"
    ), {"partition": partition}).all()  # fmt: skip
    for child, parent in rows:
        wanted = f"{partition}_{parent}"[:63]
        if child != wanted:
            conn.execute(text(f'ALTER INDEX "{child}" RENAME TO "{wanted}"'))


def name_every_partition_index(conn: Connection) -> None:
    """``name_indexes_after_parents`` for every partition, the default one too: after an index is
    created on the partitioned parent (a migration), its copies have made-up names. Nothing to do
    on an unpartitioned table (SQLite, or PostgreSQL before migration 0008)."""
    if not is_partitioned(conn):
        return
    names = conn.execute(text("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'events'::regclass"))
    for name in names.scalars().all():
        name_indexes_after_parents(conn, name)


def ensure_partitions(conn: Connection, months_ahead: int, now_ms: int | None = None) -> list[str]:
    """Create the missing month partitions from the current month to ``months_ahead`` months
    after it; returns their names."""
    year, month = month_of(timestamps.now_ms() if now_ms is None else now_ms)
    existing = {p.name for p in partitions(conn)}
    created = []
    for step in range(months_ahead + 1):
        wanted = month_partition(year + (month - 1 + step) // 12, (month - 1 + step) % 12 + 1)
        if wanted.upper_ms > timestamps.MAX_MS + 1 or wanted.name in existing:
            continue
        create_partition(conn, wanted)
        created.append(wanted.name)
    return created


def drop_expired_partitions(conn: Connection, cutoff_ms: int) -> tuple[list[str], int]:
    """Drop the month partitions whose whole range is older than ``cutoff_ms``, and delete the
    default partition's rows older than it: ``(dropped partition names, rows deleted)``."""
    dropped = []
    for partition in partitions(conn):
        if partition.upper_ms <= cutoff_ms:
            conn.execute(text(f"DROP TABLE {partition.name}"))
            event_counts.forget_hours(conn, partition.lower_ms, partition.upper_ms)
            dropped.append(partition.name)
    gone = conn.execute(
        text(f'DELETE FROM {DEFAULT_PARTITION} WHERE "timestamp" < :cutoff RETURNING account_id, name, "timestamp"'),
        {"cutoff": cutoff_ms},
    ).all()
    event_counts.forget(conn, event_counts.counts_of(gone))
    return dropped, len(gone)


def delete_expired_events(db: Database, cutoff_ms: int, batch_rows: int = RETENTION_BATCH_ROWS) -> int:
    """Delete events older than ``cutoff_ms`` in batches of ``batch_rows``, one transaction each,
    account by account (each batch is a range of ``ix_events_time``); returns how many."""
    deleted = 0
    with db.connect() as conn:
        account_ids = conn.execute(text("SELECT DISTINCT account_id FROM events")).scalars().all()
    batch = text(
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE account_id = :account_id "
        'AND "timestamp" < :cutoff ORDER BY "timestamp" LIMIT :batch) RETURNING account_id, name, "timestamp"'
    )
    for account_id in account_ids:
        while True:
            with db.begin() as conn:
                gone = conn.execute(batch, {"account_id": account_id, "cutoff": cutoff_ms, "batch": batch_rows}).all()
                event_counts.forget(conn, event_counts.counts_of(gone))
            count = len(gone)
            deleted += count
            if count < batch_rows:
                break
    return deleted


def retention_cutoff_ms(retention_days: int, now_ms: int | None = None) -> int:
    """The instant before which events have expired."""
    return (timestamps.now_ms() if now_ms is None else now_ms) - retention_days * _DAY_MS


def upkeep(db: Database, *, months_ahead: int, retention_days: int | None, now_ms: int | None = None) -> dict:
    """The periodic upkeep the workers run: partitions ahead (PostgreSQL), then retention.
    Returns what it did: ``created`` and ``dropped`` partition names, ``deleted`` rows."""
    done: dict = {"created": [], "dropped": [], "deleted": 0}
    cutoff = None if retention_days is None else retention_cutoff_ms(retention_days, now_ms)
    if db.is_postgres:
        with db.begin() as conn:
            if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _UPKEEP_LOCK_ID}).scalar():
                return done  # another worker is at it
            if not is_partitioned(conn):
                return done
            # Creating or dropping a partition waits for readers of ``events`` (a long export) and
            # new readers queue behind it: give up after a while, the next upkeep tries again.
            conn.execute(text(f"SET LOCAL lock_timeout = '{UPKEEP_LOCK_TIMEOUT_MS}ms'"))
            done["created"] = ensure_partitions(conn, months_ahead, now_ms)
            if cutoff is not None:
                done["dropped"], done["deleted"] = drop_expired_partitions(conn, cutoff)
    elif cutoff is not None:
        done["deleted"] = delete_expired_events(db, cutoff)
    if done["dropped"] or done["deleted"]:
        log.info("event retention (%d days): dropped %d partition(s), deleted %d event(s)",
                 retention_days, len(done["dropped"]), done["deleted"])  # fmt: skip
    return done
