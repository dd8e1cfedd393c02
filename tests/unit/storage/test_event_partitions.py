"""Event storage upkeep: month partitions ahead (PostgreSQL), a default partition that takes any
instant, rows moved out of it when their month gets a partition, and the retention period."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, text

from opencues import event_counts, event_partitions, events as events_lib, timestamps, worker
from opencues.event_partitions import month_of, month_partition, month_start_ms
from opencues.filestore import open_file_store
from opencues.storage.schema import event_name_hours, events

DAY = 86_400_000


def add(db, *instants, user="u"):
    with db.begin() as conn:
        for ms in instants:
            events_lib.insert_event(conn, "acct1", user, "e", ms, {"at": ms})


def stored(db) -> list[int]:
    with db.connect() as conn:
        return conn.execute(select(events.c.timestamp).order_by(events.c.timestamp)).scalars().all()


def partition_of(db, ms: int) -> str:
    with db.connect() as conn:
        return conn.execute(text('SELECT tableoid::regclass::text FROM events WHERE "timestamp" = :t'), {"t": ms}).scalar_one()


def test_month_bounds():
    assert month_start_ms(1970, 1) == 0
    assert month_start_ms(2026, 13) == month_start_ms(2027, 1)
    assert month_start_ms(1, 1) == timestamps.MIN_MS
    assert month_start_ms(9999, 13) == timestamps.MAX_MS + 1
    assert month_of(timestamps.MIN_MS) == (1, 1) and month_of(timestamps.MAX_MS) == (9999, 12)
    assert month_of(month_start_ms(2027, 3) - 1) == (2027, 2)
    assert month_partition(2027, 3).name == "events_p202703"


def test_any_instant_the_api_accepts_is_stored(db):
    add(db, timestamps.MIN_MS, -1, 0, timestamps.now_ms(), timestamps.MAX_MS)
    assert len(stored(db)) == 5


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_the_migrated_table_is_partitioned_by_month(db):
    now = timestamps.now_ms()
    add(db, now, timestamps.MAX_MS)
    year, month = month_of(now)
    assert partition_of(db, now) == month_partition(year, month).name
    assert partition_of(db, timestamps.MAX_MS) == event_partitions.DEFAULT_PARTITION
    with db.connect() as conn:
        names = {p.name for p in event_partitions.partitions(conn)}
    for ahead in range(4):  # the current month and the default three ahead exist from the migration on
        assert month_partition(year + (month - 1 + ahead) // 12, (month - 1 + ahead) % 12 + 1).name in names


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_upkeep_creates_partitions_ahead_and_moves_their_rows_out_of_the_default(db):
    then = month_start_ms(2391, 5) + 3 * DAY  # a month no partition covers yet
    add(db, then, then + 40 * DAY, then + 400 * DAY, month_start_ms(2391, 5) - 1)
    assert {partition_of(db, ms) for ms in (then, then + 40 * DAY)} == {event_partitions.DEFAULT_PARTITION}
    done = event_partitions.upkeep(db, months_ahead=2, retention_days=None, now_ms=then)
    assert done["created"] == ["events_p239105", "events_p239106", "events_p239107"]
    assert partition_of(db, then) == "events_p239105"
    assert partition_of(db, then + 40 * DAY) == "events_p239106"
    # Outside the new partitions: still in the default one.
    assert partition_of(db, then + 400 * DAY) == event_partitions.DEFAULT_PARTITION
    assert partition_of(db, month_start_ms(2391, 5) - 1) == event_partitions.DEFAULT_PARTITION
    assert len(stored(db)) == 4
    # Idempotent; and new rows of those months land in their partition.
    assert event_partitions.upkeep(db, months_ahead=2, retention_days=None, now_ms=then)["created"] == []
    with db.connect() as conn:  # its indexes named after the table's
        indexes = set(conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'events_p239105'")).scalars())
    assert {"events_p239105_ix_events_user_time", "events_p239105_ix_events_group_time", "events_p239105_events_pkey"} <= indexes
    add(db, then + 1)
    assert partition_of(db, then + 1) == "events_p239105"


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_concurrent_upkeep_creates_each_partition_once(db):
    then = month_start_ms(2512, 1)
    errors = []

    def run():
        try:
            event_partitions.upkeep(db, months_ahead=3, retention_days=None, now_ms=then)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    event_partitions.upkeep(db, months_ahead=3, retention_days=None, now_ms=then)
    with db.connect() as conn:
        names = [p.name for p in event_partitions.partitions(conn)]
    assert [n for n in names if n.startswith("events_p2512")] == [f"events_p25120{m}" for m in range(1, 5)]


def test_retention_removes_expired_events_and_keeps_newer_ones(db, backend):
    now = timestamps.now_ms()
    year, month = month_of(now - 30 * DAY)
    in_cutoff_month = max(month_start_ms(year, month), now - 30 * DAY - 2 * DAY)  # expired, in the cutoff's month
    old = [now - 400 * DAY, now - 399 * DAY, timestamps.MIN_MS]
    recent = [now - 29 * DAY, now - DAY, now, timestamps.MAX_MS]
    add(db, *old, *recent, in_cutoff_month)
    if backend == "postgres":  # the old events' month in a partition of its own, to be dropped whole
        with db.begin() as conn:
            existing = {p.name for p in event_partitions.partitions(conn)}
            for ms in (now - 400 * DAY, in_cutoff_month):
                if month_partition(*month_of(ms)).name not in existing:
                    event_partitions.create_partition(conn, month_partition(*month_of(ms)))
    done = event_partitions.upkeep(db, months_ahead=3, retention_days=30, now_ms=now)
    if backend == "postgres":
        assert month_partition(*month_of(now - 400 * DAY)).name in done["dropped"]
        # The cutoff's own month is partly within the period: kept whole.
        assert stored(db) == sorted([in_cutoff_month, *recent])
    else:
        assert done["deleted"] == 4
        assert stored(db) == sorted(recent)
    assert event_partitions.upkeep(db, months_ahead=3, retention_days=30, now_ms=now)["dropped"] == []
    assert hour_counts(db) == recounted(db)  # analytics' hourly counts lost the expired events too


def hour_counts(db) -> list[tuple]:
    with db.connect() as conn:
        return sorted(conn.execute(select(event_name_hours.c.account_id, event_name_hours.c.name,
                                          event_name_hours.c.hour, event_name_hours.c.events)).all())  # fmt: skip


def recounted(db) -> list[tuple]:
    """The hourly counts counted afresh from the stored events (``event_counts.rebuild``)."""
    with db.connect() as conn:
        transaction = conn.begin()
        event_counts.rebuild(conn)
        rows = sorted(conn.execute(select(event_name_hours.c.account_id, event_name_hours.c.name,
                                          event_name_hours.c.hour, event_name_hours.c.events)).all())  # fmt: skip
        transaction.rollback()
    return rows


def test_retention_is_off_by_default(db, tmp_path):
    add(db, timestamps.MIN_MS, timestamps.now_ms() - 4000 * DAY)
    assert worker.Worker(db, None, _settings(db, tmp_path)).keep_up_event_storage()["deleted"] == 0
    assert len(stored(db)) == 2


def test_sqlite_deletes_in_batches(db, backend):
    if backend != "sqlite":
        pytest.skip("SQLite deletes expired events row by row")
    add(db, *range(25))
    add(db, *range(7), user="other")
    with db.begin() as conn:  # another account
        events_lib.insert_event(conn, "acct2", "u", "e", 3)
    assert event_partitions.delete_expired_events(db, cutoff_ms=20, batch_rows=4) == 20 + 7 + 1
    assert stored(db) == list(range(20, 25))


def test_the_workers_sweep_applies_the_retention_period(db, tmp_path):
    now = timestamps.now_ms()
    add(db, now - 1000 * DAY, now)
    settings = _settings(db, tmp_path).model_copy(update={"event_retention_days": 60})
    sweeper = worker.Worker(db, open_file_store(settings), settings)
    stopper = threading.Timer(1.0, sweeper.stopping.set)
    stopper.start()
    sweeper.run_forever()  # sweeps once at start, then idles until stopped
    assert stored(db) == [now]


def _settings(db, tmp_path):
    from opencues.settings import Settings

    return Settings(data_dir=tmp_path / "data", database_url=db.url, job_workers=0)


def test_counting_with_partitions(db):
    """Counts and the id order survive partitioning: ids grow across partitions."""
    add(db, timestamps.now_ms(), timestamps.MIN_MS, timestamps.MAX_MS)
    with db.connect() as conn:
        ids = conn.execute(select(events.c.id).order_by(events.c.id)).scalars().all()
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 3
    assert ids == sorted(set(ids)) and len(ids) == 3


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 8, 100])
def test_history_is_newest_first_across_partitions_and_windows(db, limit):
    """The history walks month windows on partitioned PostgreSQL: every limit, including those
    that a window fills exactly or not at all, gives the same newest-first page as a plain scan."""
    now = timestamps.now_ms()
    year, month = month_of(now)
    this_month = month_start_ms(year, month)
    instants = [timestamps.MAX_MS, now, this_month, this_month, this_month - 1, month_start_ms(year, month - 2),
                month_start_ms(year, month - 7) + 5, timestamps.MIN_MS]  # fmt: skip
    add(db, *instants)
    add(db, now - 1, user="someone else")
    page = events_lib.history(db, "acct1", "u", limit=limit)
    assert [e["attributes"]["at"] for e in page] == sorted(instants, reverse=True)[:limit]
    # Equal timestamps: the latest stored first.
    with db.connect() as conn:
        ids = conn.execute(select(events.c.id).where(events.c.timestamp == this_month).order_by(events.c.id)).scalars().all()
    rows = events_lib.history_rows(db, "acct1", "u", 8)
    assert [r[1] for r in rows][2:4] == [this_month, this_month] and len(ids) == 2
    assert events_lib.history(db, "acct1", "nobody", limit=limit) == []


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_a_history_window_reads_only_its_partitions(db):
    year, month = month_of(timestamps.now_ms())
    add(db, month_start_ms(year, month - 5), timestamps.now_ms())
    sql = str(events_lib._history_since(month_start_ms(year, month)).compile(db.engine))
    with db.connect() as conn:
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(
            f"EXPLAIN {sql}", {"account_id": "acct1", "user_id": "u", "limit": 100}))  # fmt: skip
    assert month_partition(year, month).name in plan and event_partitions.DEFAULT_PARTITION in plan, plan
    assert month_partition(*month_of(month_start_ms(year, month - 1))).name not in plan, plan
