"""Exact event counts per account, event name and UTC hour (table ``event_name_hours``).

Analytics counts of ``events`` by ``name`` (the "top names" and digest queries) add up these
counts for the whole hours inside the query's window, and count only the events of the partial
hours at its two ends: a few thousand small rows instead of every event of the window.

The counts stay exact because every writer of events adds its rows' counts in the same
transaction as the rows:

- ``opencues.events`` (track): the group commit's companion (``HourCounts``) adds one upsert per
  distinct (account, name, hour) of the group;
- ``opencues.imports``: each batch adds its counts (``record``);
- anything that writes ``events`` otherwise (snapshot loads, benchmark loaders, migration 0007)
  calls ``rebuild`` afterwards.

Deleting an account's data deletes its events and their counts in one step
(``delete_events_and_counts``, from ``opencues.snapshots``); the retention period's deletes take their
rows' counts away (``forget``, ``forget_hours``; ``opencues.event_partitions``).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping, Sequence

from sqlalchemy import Connection, bindparam, delete, func, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite

from opencues.storage.schema import event_name_hours, events

HOUR_MS = 3_600_000


def hour_of(timestamp_ms: int) -> int:
    return timestamp_ms // HOUR_MS


def _upsert(dialect_name: str):
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    statement = insert(event_name_hours).values({c: bindparam(c) for c in ("account_id", "name", "hour", "events")})
    return statement.on_conflict_do_update(
        index_elements=["account_id", "hour", "name"],
        set_={"events": event_name_hours.c.events + statement.excluded.events},
    )


def _rows(counts: Mapping[tuple[str, str, int], int]) -> list[dict]:
    # One order for every writer: concurrent PostgreSQL transactions adding to the same hours
    # then wait for each other in turn instead of deadlocking.
    return [{"account_id": a, "name": n, "hour": h, "events": c} for (a, n, h), c in sorted(counts.items())]


def counts_of(rows: Iterable[tuple[str, str, int]]) -> Counter:
    """``{(account_id, name, hour): events}`` of ``(account_id, name, timestamp_ms)`` triples."""
    return Counter((a, n, t // HOUR_MS) for a, n, t in rows)


def record(conn: Connection, counts: Mapping[tuple[str, str, int], int]) -> None:
    """Add ``counts`` (``counts_of``) in the caller's transaction."""
    if counts:
        conn.execute(_upsert(conn.dialect.name), _rows(counts))


def forget(conn: Connection, counts: Mapping[tuple[str, str, int], int]) -> None:
    """Take ``counts`` (``counts_of`` the deleted rows) away in the caller's transaction; an hour
    left with no events is removed."""
    if not counts:
        return
    key = (event_name_hours.c.account_id == bindparam("a")) & (event_name_hours.c.name == bindparam("n")) & (
        event_name_hours.c.hour == bindparam("h")
    )
    rows = [{"a": a, "n": n, "h": h, "c": c} for (a, n, h), c in sorted(counts.items())]
    conn.execute(event_name_hours.update().where(key).values(events=event_name_hours.c.events - bindparam("c")), rows)
    conn.execute(event_name_hours.delete().where(key & (event_name_hours.c.events <= 0)), rows)


def delete_events_and_counts(conn: Connection, account_id: str | None) -> None:
    """Delete an account's events (every account's: None) and their counts, in the caller's
    transaction, so that no count outlives its events nor an event its count, whatever commits
    meanwhile.

    On PostgreSQL each statement of a READ COMMITTED transaction sees what committed before it:
    with the counts deleted by one statement and the events by the next, a track committed
    between the two lost its event and kept its count. So the events are deleted first and
    exactly the counts of the events that statement deleted are taken away (one statement);
    then the hours left at zero go. An event committed after that statement stays with its
    count (an hour this transaction changed waits for its commit, then is added to anew).
    SQLite's write lock keeps every other writer out of the whole transaction."""
    events_of = [] if account_id is None else [events.c.account_id == account_id]
    counts_of_them = [] if account_id is None else [event_name_hours.c.account_id == account_id]
    if conn.dialect.name != "postgresql":
        conn.execute(delete(events).where(*events_of))
        conn.execute(delete(event_name_hours).where(*counts_of_them))
        return
    gone = delete(events).where(*events_of).returning(events.c.account_id, events.c.name, events.c.timestamp).cte("gone")
    hour = hour_sql(gone.c.timestamp)
    keys = (gone.c.account_id, gone.c.name, hour)
    lost = select(*keys[:2], hour.label("hour"), func.count().label("events")).group_by(*keys).cte("lost")
    conn.execute(
        update(event_name_hours)
        .where(
            event_name_hours.c.account_id == lost.c.account_id,
            event_name_hours.c.name == lost.c.name,
            event_name_hours.c.hour == lost.c.hour,
        )
        .values(events=event_name_hours.c.events - lost.c.events)
    )
    conn.execute(delete(event_name_hours).where(*counts_of_them, event_name_hours.c.events <= 0))


def forget_hours(conn: Connection, first_ms: int, end_ms: int) -> None:
    """Remove every account's counts of the hours in ``[first_ms, end_ms)`` (both whole hours): the
    events of that range were dropped together (a month partition)."""
    conn.execute(
        event_name_hours.delete().where(
            event_name_hours.c.hour >= hour_of(first_ms), event_name_hours.c.hour < hour_of(end_ms)
        )
    )


class HourCounts:
    """The group commit's companion for event inserts (``Direct.attach``; used by
    ``opencues.events``): one upsert per distinct (account, name, hour) of the rows written."""

    def __init__(self, dialect_name: str):
        self._statement = _upsert(dialect_name)

    def __call__(self, rows: Sequence[Mapping]) -> list:
        counts = counts_of((r["account_id"], r["name"], r["timestamp"]) for r in rows)
        return [(self._statement, _rows(counts))]


def hour_sql(timestamp):
    """``floor(timestamp / HOUR_MS)`` in SQL integer arithmetic: division truncates toward zero on
    both databases, so the time is shifted first (events before 1970 fall in the hour below)."""
    shift_hours = 1_000_000_000  # ~114,000 years: every storable time
    shifted = (timestamp + literal_column(str(shift_hours * HOUR_MS))).self_group()
    return shifted.op("/")(literal_column(str(HOUR_MS))) - literal_column(str(shift_hours))


def rebuild(conn: Connection, account_id: str | None = None) -> None:
    """Replace the counts of ``account_id`` (or of every account) by counting the stored events,
    in the caller's transaction: after events were written without ``record``."""
    hour = hour_sql(events.c.timestamp)
    query = select(events.c.account_id, events.c.name, hour, func.count()).group_by(events.c.account_id, events.c.name, hour)
    delete = event_name_hours.delete()
    if account_id is not None:
        query = query.where(events.c.account_id == account_id)
        delete = delete.where(event_name_hours.c.account_id == account_id)
    conn.execute(delete)
    conn.execute(event_name_hours.insert().from_select(["account_id", "name", "hour", "events"], query))
