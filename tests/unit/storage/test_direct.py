import asyncio
import gc
import threading
import time

import pytest
from sqlalchemy import bindparam, func, select, text

from opencues import accounts, events
from opencues.storage import Database
from opencues.storage.schema import events as events_table

ROW = {"account_id": "acct1", "user_id": "u", "name": "e", "timestamp": 1, "attributes": "{}"}


def count(db) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(events_table)).scalar_one()


def test_reads_see_every_commit_at_once_so_revocation_is_immediate(db, settings, account):
    assert accounts.authenticate(db, account.key, account.secret) is not None  # the thread's connection is open
    elsewhere = Database(settings.resolved_database_url)  # another process, in effect
    try:
        accounts.revoke_key(elsewhere, account.key)
    finally:
        elsewhere.dispose()
    assert accounts.authenticate(db, account.key, account.secret) is None


def test_prepared_statements_bind_names_on_either_driver(db, account):
    db.direct.write(events.events.insert().inline().values({k: bindparam(k) for k in ROW}), [ROW, {**ROW, "timestamp": 2}])
    rows = db.direct.fetch_all(events.history_statement(), {"account_id": "acct1", "user_id": "u", "limit": 1})
    assert rows == [("u", 2, "e", "{}", None, None)]  # JSON stays text on this path, on both databases


def test_a_thread_that_ends_gives_its_connection_back(db):
    """A thread pool's idle workers end; each kept its connection for good until the pool ran out
    (Studio's profile edits, run in the pool, exhausted it)."""
    statement = events.events.insert().inline().values({k: bindparam(k) for k in ROW})
    for _ in range(db.engine.pool.size() + db.engine.pool._max_overflow + 5):
        thread = threading.Thread(target=db.direct.write, args=(statement, [ROW]))
        thread.start()
        thread.join()
    gc.collect()
    assert db.engine.pool.checkedout() <= 1
    assert count(db) == db.engine.pool.size() + db.engine.pool._max_overflow + 5


def test_concurrent_single_row_writes_share_one_commit(db, monkeypatch):
    batches = []
    write_batches = db.direct.write_batches

    def recording(groups):
        batches.append(sum(len(rows) for _statement, rows in groups))
        write_batches(groups)

    monkeypatch.setattr(db.direct, "write_batches", recording)

    async def burst():
        payload = {"name": "e", "timestamp": "2021-01-01T00:00:00Z"}
        await asyncio.gather(*(events.track_grouped(db, "acct1", f"u{i}", payload) for i in range(20)))

    asyncio.run(burst())
    assert sum(batches) == 20 and len(batches) < 20, batches  # the first row may go alone
    assert count(db) == 20


def test_a_bad_row_fails_alone_in_its_group(db):
    insert = events_table.insert().inline().values({k: bindparam(k) for k in ROW})

    async def burst():
        rows = [ROW, {**ROW, "name": None}, {**ROW, "timestamp": 3}]  # NOT NULL violated by the second
        return await asyncio.gather(*(db.direct.write_grouped(insert, r) for r in rows), return_exceptions=True)

    results = asyncio.run(burst())
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Exception)
    assert count(db) == 2


def test_a_statement_with_a_row_order_writes_each_group_in_that_order(db):
    """(Profile UPSERTs lock a row each: sorted, two processes' groups cannot deadlock.)"""
    insert = events_table.insert().inline().values({k: bindparam(k) for k in ROW})
    db.direct.order_rows(insert, lambda row: row["user_id"])

    async def burst():
        rows = [{**ROW, "user_id": f"u{n}", "timestamp": t} for t, n in enumerate([5, 3, 9, 3, 1, 7])]
        await asyncio.gather(*(db.direct.write_grouped(insert, r) for r in rows[:1]))  # the writer is running
        await asyncio.gather(*(db.direct.write_grouped(insert, r) for r in rows[1:]))

    asyncio.run(burst())
    with db.connect() as conn:
        stored = conn.execute(select(events_table.c.user_id, events_table.c.timestamp).order_by(events_table.c.id)).all()
    assert [tuple(r) for r in stored[1:]] == [("u1", 4), ("u3", 1), ("u3", 3), ("u7", 5), ("u9", 2)]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_lost_connection_is_replaced(db, account):
    assert accounts.authenticate(db, account.key, account.secret) is not None
    pid = db.direct.fetch_one(select(func.pg_backend_pid()), {})[0]
    with db.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with pytest.raises(Exception):
        accounts.authenticate(db, account.key, account.secret)
    assert accounts.authenticate(db, account.key, account.secret) is not None


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_wal_is_checkpointed_off_the_commit_path(db, settings):
    path = settings.data_dir / "opencues.db"
    before = path.stat().st_size
    big = {**ROW, "attributes": '{"blob": "' + "x" * 2000 + '"}'}
    insert = events_table.insert().inline().values({k: bindparam(k) for k in ROW})

    async def burst():
        for _ in range(10):  # ~200 pages: far below SQLite's own 1000-page autocheckpoint
            await asyncio.gather(*(db.direct.write_grouped(insert, big) for _ in range(20)))

    asyncio.run(burst())
    deadline = time.monotonic() + 5
    while path.stat().st_size == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_size > before  # the checkpointer thread copied the WAL into the file


def _reads(statement, params, times: int = 1):
    """A read plan running ``statement`` ``times`` times; the thread it ran on, and its rows."""
    rows = []
    for _ in range(times):
        rows.append((yield statement, params))
    return threading.current_thread(), rows


def test_run_and_run_async_give_a_read_plan_its_rows(db, account):
    db.direct.write(events.events.insert().inline().values({k: bindparam(k) for k in ROW}), [ROW])
    statement, params = events.history_statement(), {"account_id": "acct1", "user_id": "u", "limit": 5}
    expected = [("u", 1, "e", "{}", None, None)]
    assert db.direct.run(_reads(statement, params, times=2)) == (threading.current_thread(), [expected, expected])

    async def main():
        return threading.current_thread(), await asyncio.gather(*(db.direct.run_async(_reads(statement, params, 2)) for _ in range(6)))

    loop_thread, results = asyncio.run(main())
    assert results == [(loop_thread, [expected, expected])] * 6  # on the loop's thread, on both databases


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_run_async_leaves_the_loop_free_while_postgresql_answers(db):
    """Two more reads of 0.2 s at once than the loop has connections: they run in two rounds
    (~0.4 s, not one after the other), and the loop keeps running other tasks all the while."""
    from opencues.storage.direct import _READERS

    sleep = text("SELECT pg_sleep(:seconds)")

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        started = time.monotonic()
        await asyncio.gather(*(db.direct.run_async(_reads(sleep, {"seconds": 0.2})) for _ in range(_READERS + 2)))
        elapsed = time.monotonic() - started
        ticking.cancel()
        return elapsed, ticks

    elapsed, ticks = asyncio.run(main())
    assert 0.4 <= elapsed < 1.0  # at most ``_READERS`` at once, yet concurrent
    assert ticks >= 20  # the loop was never held by a read


def _history_then_plan_counts(db, times: int):
    """A read plan: a user's history page ``times`` times (psycopg prepares a statement once it has
    run it five times), then how PostgreSQL planned this connection's prepared statements."""
    for _ in range(times):
        yield from events.history_json_reads(db, "acct1", "u", 10)
    return (yield text("SELECT sum(custom_plans), sum(generic_plans) FROM pg_prepared_statements"), {})


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_hot_path_statements_are_planned_once_not_at_every_call(db):
    """Under PostgreSQL's default plan cache mode, a prepared statement's first five runs are planned
    afresh, and later ones too whenever the estimates favour it (a history page then costs the
    database twice its CPU): the request path's connections keep one generic plan."""
    [(custom, generic)] = db.direct.run(_history_then_plan_counts(db, 12))
    assert (custom, generic) == (0, 7)  # runs 6-12, prepared, all on one generic plan
    [(custom, generic)] = asyncio.run(db.direct.run_async(_history_then_plan_counts(db, 12)))
    assert (custom, generic) == (0, 7)


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_run_async_replaces_a_lost_connection_and_dispose_closes_them(db):
    statement, params = text("SELECT pg_backend_pid()"), {}

    async def backend_pid():
        _thread, [[(pid,)]] = await db.direct.run_async(_reads(statement, params))
        return pid

    async def main():
        first = await backend_pid()
        with db.engine.connect() as conn:  # the database drops that connection (a restart, a proxy)
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        with pytest.raises(pytest.importorskip("psycopg").OperationalError):
            await backend_pid()  # the read that finds it gone fails, as on every other path
        second = await backend_pid()  # the next opens a new one
        assert second != first
        return second

    loop = asyncio.new_event_loop()
    try:
        pid = loop.run_until_complete(main())
        db.direct.dispose()
        deadline = time.monotonic() + 5
        while True:
            # A transaction each time: PostgreSQL reads pg_stat_activity once per transaction, so
            # one that first saw the backend still exiting kept seeing it (a flaky failure).
            with db.engine.connect() as conn:
                if not conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar():
                    break
            assert time.monotonic() < deadline, "dispose left the loop's connection open"
            time.sleep(0.05)
    finally:
        loop.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_dispose_does_not_wait_out_the_checkpoint_interval(db, monkeypatch):
    """The checkpointer rests between two checkpoints; stopping must cut that rest short, or every
    dispose (each server's shutdown, each test's database) waits for it."""
    from opencues.storage import direct

    monkeypatch.setattr(direct, "_CHECKPOINT_INTERVAL", 60.0)
    insert = events_table.insert().inline().values({k: bindparam(k) for k in ROW})

    async def one_write():
        await db.direct.write_grouped(insert, ROW)

    asyncio.run(one_write())
    time.sleep(0.2)  # the checkpointer has run its checkpoint and is resting
    started = time.monotonic()
    db.direct.dispose()
    assert time.monotonic() - started < 30  # waited out the 60 s rest before
