"""The worker: exclusive claims, leases, fencing, resumption, retries and shutdown."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time

import orjson
import pytest
from sqlalchemy import select, update

from opencues import attribute_keys, imports, jobs, worker
from opencues import events as events_lib
from opencues.filestore import new_key, open_file_store
from opencues.jobs import JobStatus
from opencues.settings import Settings
from opencues.storage.schema import events
from opencues.storage.schema import jobs as jobs_table
from opencues.timestamps import now_ms


@pytest.fixture
def settings(database_url, tmp_path):
    return Settings(data_dir=tmp_path / "data", database_url=database_url, job_workers=0, import_batch_rows=10,
                    job_lease_seconds=30)  # fmt: skip


@pytest.fixture
def store(settings):
    return open_file_store(settings)


@pytest.fixture
def kind(monkeypatch):
    """A test job kind whose handler the test sets with ``kind.handler = ...``."""

    class Kind:
        name = "test_kind"
        handler = staticmethod(lambda ctx: None)

    def run(ctx):
        return Kind.handler(ctx)

    monkeypatch.setitem(jobs.JOB_NAMES, Kind.name, "Test Job")
    monkeypatch.setitem(worker.HANDLERS, Kind.name, worker.Registration(Kind.name, run, "Ingesting"))
    return Kind


def new_job(db, kind="test_kind", account_id="acct1", **kwargs) -> str:
    with db.begin() as conn:
        return jobs.create_job(conn, account_id, kind, **kwargs)


def job_row(db, job_id):
    with db.connect() as conn:
        return jobs.load_job(conn, job_id)


def expire_lease(db, job_id):
    with db.begin() as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(lease_expires_at=now_ms() - 1))


def store_events_payload(store, count: int) -> str:
    key = new_key("uploads", ".ndjson")
    with store.writer(key) as out:
        for i in range(count):
            out.write(orjson.dumps({"user_id": f"u{i}", "name": "e", "timestamp": i}) + b"\n")
    return key


def store_profiles_payload(store, count: int) -> str:
    key = new_key("uploads", ".ndjson")
    with store.writer(key) as out:
        for i in range(count):
            out.write(orjson.dumps({"user_id": f"p{i}", "n": i}) + b"\n")
    return key


def event_timestamps(db):
    """Every stored event's timestamp, in order: a row written twice shows twice. (Ordered by time:
    on PostgreSQL neighbouring batches are written at once and their ids interleave.)"""
    with db.connect() as conn:
        return conn.execute(select(events.c.timestamp).order_by(events.c.timestamp)).scalars().all()


def names(db, job_id):
    return [e["name"] for e in jobs.job_events_of(db, job_id)]


def test_a_job_is_claimed_by_one_worker_until_its_lease_expires(db, kind):
    job_id = new_job(db)
    first = worker.claim(db, "A", [kind.name], 30_000)
    assert first.id == job_id and first.attempts == 1 and first.lease_owner == "A"
    assert worker.claim(db, "B", [kind.name], 30_000) is None
    expire_lease(db, job_id)
    second = worker.claim(db, "B", [kind.name], 30_000)
    assert second.id == job_id and second.attempts == 2 and second.lease_owner == "B"


def test_only_registered_kinds_are_claimed(db, kind):
    new_job(db, kind="something_else")
    assert worker.claim(db, "A", [kind.name], 30_000) is None
    assert worker.claim(db, "A", [], 30_000) is None


def test_commit_after_losing_the_lease_rolls_the_batch_back(db, store, settings, kind):
    job_id = new_job(db)
    job = worker.claim(db, "A", [kind.name], 30_000)
    ctx = worker.JobContext(db, store, settings, job, "A", threading.Event())
    expire_lease(db, job_id)
    assert worker.claim(db, "B", [kind.name], 30_000) is not None
    with pytest.raises(worker.LeaseLost):
        with ctx.transaction() as conn:
            events_lib.insert_event(conn, "acct1", "u", "e", 1, {"k": 1})
            ctx.commit_progress(conn, consumed=1, completed=1)
    assert event_timestamps(db) == []
    with db.connect() as conn:
        assert attribute_keys.read(conn, "acct1") == {}  # the event's catalogue entry went with it
    assert job_row(db, job_id).rows_done == 0 and job_row(db, job_id).lease_owner == "B"


def test_a_crash_mid_job_resumes_after_the_last_committed_batch(db, store, settings, monkeypatch):
    """A worker dies (an exception no one catches, like a kill) during its 4th batch: the
    next claim resumes at row 30 and every row ends up written exactly once."""
    key = store_events_payload(store, 95)
    job_id = new_job(db, kind="import_events", payload_key=key, payload_format="ndjson")
    writer = imports._copy_events if db.is_postgres else imports._insert_events_sqlite

    class Crash(BaseException):
        pass

    def crashing(raw, *args):
        writer(raw, *args)
        rows = args[-1]  # SQLite: pieces of a JSON array of rows
        first = rows[0][3] if db.is_postgres else orjson.loads("[" + ",".join(rows) + "]")[0][2]
        if first == 30:  # the 4th batch (on PostgreSQL the 5th may be written beside it)
            raise Crash()

    monkeypatch.setattr(imports, "_copy_events" if db.is_postgres else "_insert_events_sqlite", crashing)
    with pytest.raises(Crash):
        worker.run_pending_jobs(db, store, settings)
    assert job_row(db, job_id).rows_done == 30
    assert event_timestamps(db) == list(range(30))

    monkeypatch.setattr(imports, "_copy_events" if db.is_postgres else "_insert_events_sqlite", writer)
    expire_lease(db, job_id)
    assert worker.run_pending_jobs(db, store, settings) == 1
    row = job_row(db, job_id)
    assert row.status == "COMPLETED" and row.rows_done == 95 and row.ingestions_completed == 95
    assert event_timestamps(db) == list(range(95))
    assert names(db, job_id) == ["Ingesting", "Resumed", "Completed"]
    assert jobs.job_events_of(db, job_id)[1]["attributes"] == {"attempt": 2, "rows_processed": 30}
    assert not store.exists(key)


@pytest.fixture
def small_writes(monkeypatch):
    """Events imports parse 2 items at a time and write 4 rows at a time: a batch of 10 is
    streamed in three writes (4, 4, 2) before its progress mark commits it."""
    monkeypatch.setattr(imports, "_PARSE_CHUNK", 2)
    monkeypatch.setattr(imports, "_MIN_WRITE_ROWS", 4)
    monkeypatch.setattr(imports, "_MAX_WRITE_ROWS", 4)
    monkeypatch.setattr(imports._InlineStream, "lock_seconds", None)  # batches end where the test says


def _events_writer(db):
    return ("_copy_events", imports._copy_events) if db.is_postgres else ("_insert_events_sqlite", imports._insert_events_sqlite)


def test_a_crash_mid_batch_loses_the_rows_already_streamed_into_it(db, store, settings, monkeypatch, small_writes):
    """Rows are written as they are parsed, but a batch commits whole: a crash during batch 2's
    second write keeps batch 1 and none of batch 2; the resumed job writes every row once. (One
    connection at a time, so that the writes come in order: the test below has two.)"""
    settings.import_write_connections = 1
    key = store_events_payload(store, 25)
    job_id = new_job(db, kind="import_events", payload_key=key, payload_format="ndjson")
    name, writer = _events_writer(db)
    sizes = []

    class Crash(BaseException):
        pass

    def crashing(target, *args):
        rows = args[-1]  # SQLite: pieces of a JSON array of rows
        sizes.append(len(rows) if db.is_postgres else len(orjson.loads("[" + ",".join(rows) + "]")))
        writer(target, *args)
        if len(sizes) == 5:
            raise Crash()

    monkeypatch.setattr(imports, name, crashing)
    with pytest.raises(Crash):
        worker.run_pending_jobs(db, store, settings)
    assert sizes == [4, 4, 2, 4, 4]
    assert job_row(db, job_id).rows_done == 10
    assert event_timestamps(db) == list(range(10))

    monkeypatch.setattr(imports, name, writer)
    expire_lease(db, job_id)
    assert worker.run_pending_jobs(db, store, settings) == 1
    row = job_row(db, job_id)
    assert row.status == "COMPLETED" and row.rows_done == 25 and row.ingestions_completed == 25
    assert event_timestamps(db) == list(range(25))


def test_a_lease_lost_at_the_end_of_a_streamed_batch_rolls_its_rows_back(db, store, settings, monkeypatch, small_writes):
    key = store_events_payload(store, 10)
    job_id = new_job(db, kind="import_events", payload_key=key, payload_format="ndjson")
    progress_update = jobs.progress_update

    def taken_at_the_mark(conn, job_id, owner, **values):
        if "rows_done" in values:  # the batch's progress mark: by now another worker holds the job
            return False
        return progress_update(conn, job_id, owner, **values)

    monkeypatch.setattr(jobs, "progress_update", taken_at_the_mark)
    assert worker.Worker(db, store, settings).run_once()
    assert event_timestamps(db) == []  # three writes of the batch, all rolled back
    with db.connect() as conn:
        assert attribute_keys.read(conn, "acct1") == {}
    assert job_row(db, job_id).rows_done == 0


def test_a_stop_mid_batch_rolls_the_batch_back_and_releases_the_job(db, store, settings, monkeypatch, small_writes):
    key = store_events_payload(store, 10)
    job_id = new_job(db, kind="import_events", payload_key=key, payload_format="ndjson")
    stopping = threading.Event()
    name, writer = _events_writer(db)

    def stopped_after_the_first_write(*args):
        writer(*args)
        stopping.set()

    monkeypatch.setattr(imports, name, stopped_after_the_first_write)
    assert worker.Worker(db, store, settings, stopping=stopping).run_once()
    assert event_timestamps(db) == []
    row = job_row(db, job_id)
    assert row.status == "IN_PROGRESS" and row.lease_owner is None and row.rows_done == 0
    assert names(db, job_id) == ["Ingesting", "Released"]
    monkeypatch.setattr(imports, name, writer)
    worker.run_pending_jobs(db, store, settings)
    assert event_timestamps(db) == list(range(10)) and job_row(db, job_id).status == "COMPLETED"


def test_a_parse_failure_mid_batch_rolls_back_the_rows_streamed_before_it(db, store, settings, monkeypatch, small_writes):
    """An unexpected error while parsing (not a bad row: a bug or a failing read) ends the attempt;
    the rows of the open batch written before it go too, and the retry starts from the mark."""
    from opencues import readers

    key = store_events_payload(store, 10)
    job_id = new_job(db, kind="import_events", payload_key=key, payload_format="ndjson")
    event_from_record = readers.event_from_record

    def failing_at_u6(value, **kwargs):
        if value.get("user_id") == "u6":
            raise RuntimeError("boom")
        return event_from_record(value, **kwargs)

    monkeypatch.setattr(readers, "event_from_record", failing_at_u6)
    assert worker.Worker(db, store, settings).run_once()
    assert event_timestamps(db) == []  # rows 0-3 had been written
    row = job_row(db, job_id)
    assert row.status == "IN_PROGRESS" and row.rows_done == 0 and row.lease_owner is None


class _PostgresBatches:
    """Records each events batch's backend, and can hold a batch at its COPY's end or at its
    closing writes until a later batch's rows are being written (on PostgreSQL, with
    ``imports._Lanes``, a later batch is written on another connection while an earlier one
    ends). A batch is known by its rows: batch ``k`` holds timestamps ``10k`` to ``10k + 9``."""

    def __init__(self, db, monkeypatch):
        if not db.is_postgres:
            pytest.skip("PostgreSQL only: SQLite has one writer")
        self.backends, self.marks = [], []
        self.hold_copy_end: dict[int, int] = {}  # batch → the batch whose rows it waits for at its COPY's end
        self.fail_close: dict[int, int] = {}  # batch → the batch it waits for, then fails its closing writes
        self.waited: dict[int, bool] = {}  # batch → whether the rows it waited for came
        self._written = [threading.Event() for _ in range(8)]
        self._batch_of_copy: dict[int, int] = {}
        copying, copy_events, close = imports._EventsTarget._copying, imports._copy_events, imports._EventsTarget.close
        progress_update = jobs.progress_update
        batches = self

        @contextlib.contextmanager
        def recording(target, raw):
            batches.backends.append(raw.execute("SELECT pg_backend_pid()").fetchone()[0])
            with copying(target, raw):
                yield
                target.batch = batch = batches._batch_of_copy[id(target._copy)]
                if batch in batches.hold_copy_end:
                    batches.waited[batch] = batches._written[batches.hold_copy_end[batch]].wait(10)

        def writing(copy, rows):
            batch = rows[0][3] // 10
            batches._batch_of_copy[id(copy)] = batch
            copy_events(copy, rows)
            batches._written[batch].set()

        def closing(target, conn, totals):
            if target.batch in batches.fail_close:
                batches.waited[target.batch] = batches._written[batches.fail_close[target.batch]].wait(10)
                raise RuntimeError(f"batch {target.batch}'s counts failed")
            close(target, conn, totals)

        def recording_marks(conn, job_id, owner, **values):
            if "rows_done" in values:
                batches.marks.append(values["rows_done"])
            return progress_update(conn, job_id, owner, **values)

        monkeypatch.setattr(imports._EventsTarget, "_copying", recording)
        monkeypatch.setattr(imports, "_copy_events", writing)
        monkeypatch.setattr(imports._EventsTarget, "close", closing)
        monkeypatch.setattr(jobs, "progress_update", recording_marks)


def test_postgres_writes_the_next_batch_on_another_connection_while_one_ends_and_commits_them_in_order(db, store, settings, monkeypatch):
    """PostgreSQL (``imports._Lanes``): batch 2 is written on a second connection while batch 1's
    COPY is still ending, and batch 2's mark still waits for batch 1's: the marks commit in order."""
    batches = _PostgresBatches(db, monkeypatch)
    batches.hold_copy_end = {0: 1}  # batch 1's rows must be written before batch 0's COPY may end
    key = store_events_payload(store, 40)
    job_id = new_job(db, kind="import_events", payload_key=key, payload_format="ndjson")
    assert worker.run_pending_jobs(db, store, settings) == 1
    assert batches.waited == {0: True}
    assert len(set(batches.backends)) == 2 and len(batches.backends) == 4
    assert batches.marks == [10, 20, 30, 40]
    assert event_timestamps(db) == list(range(40))
    row = job_row(db, job_id)
    assert row.status == "COMPLETED" and row.rows_done == 40 and row.ingestions_completed == 40


def test_postgres_one_connection_writes_one_batch_at_a_time(db, store, settings, monkeypatch):
    batches = _PostgresBatches(db, monkeypatch)
    settings.import_write_connections = 1
    key = store_events_payload(store, 30)
    new_job(db, kind="import_events", payload_key=key, payload_format="ndjson")
    assert worker.run_pending_jobs(db, store, settings) == 1
    assert len(set(batches.backends)) == 1 and batches.marks == [10, 20, 30]


def _fail_batch_1_beside_batch_2(db, store, settings, monkeypatch):
    """Run a 40-row import whose batch 1 fails at its closing writes once batch 2's rows are
    being written on the other connection."""
    batches = _PostgresBatches(db, monkeypatch)
    batches.fail_close = {1: 2}
    key = store_events_payload(store, 40)
    job_id = new_job(db, kind="import_events", payload_key=key, payload_format="ndjson")
    worker.run_pending_jobs(db, store, settings)
    assert batches.waited == {1: True}
    return batches, job_id


def test_postgres_a_failed_batch_takes_back_the_later_batch_written_beside_it(db, store, settings, monkeypatch):
    """Batch 1 fails at its closing writes once batch 2's rows are written on the other connection:
    batch 2 must not commit (its mark would skip batch 1's rows), batch 0 stays, and the retry
    writes every row once."""
    settings.job_max_attempts = 2
    batches, job_id = _fail_batch_1_beside_batch_2(db, store, settings, monkeypatch)
    assert batches.marks == [10, 20]  # batch 1's mark (rolled back), never batch 2's
    assert event_timestamps(db) == list(range(10))
    row = job_row(db, job_id)
    assert row.status == "IN_PROGRESS" and row.rows_done == 10 and row.attempts == 1

    batches.fail_close = {}
    expire_lease(db, job_id)
    assert worker.run_pending_jobs(db, store, settings) == 1
    assert event_timestamps(db) == list(range(40))
    assert job_row(db, job_id).status == "COMPLETED"


def test_postgres_a_failed_batch_fails_the_job_with_its_own_error(db, store, settings, monkeypatch):
    settings.job_max_attempts = 1
    _, job_id = _fail_batch_1_beside_batch_2(db, store, settings, monkeypatch)
    detail = jobs.get_job(db, "acct1", job_id)
    assert detail["status"] == "FAILED" and "batch 1's counts failed" in detail["events"][-1]["attributes"]["reason"]
    assert event_timestamps(db) == list(range(10))


class _TrackDuringAnImport:
    """Records the order of an import's writes and of one track call made during its first write
    (it then waits for SQLite's write lock), and the progress marks the batches commit."""

    def __init__(self, db, monkeypatch):
        self.db, self.seen, self.marks, self._thread = db, [], [], None
        progress_update = jobs.progress_update

        def recording(conn, job_id, owner, **values):
            if "rows_done" in values:
                self.marks.append(values["rows_done"])
            return progress_update(conn, job_id, owner, **values)

        monkeypatch.setattr(jobs, "progress_update", recording)

    def _track(self) -> None:
        with self.db.write_turn():  # (track's own write takes it too; held here to record the order)
            events_lib.track(self.db, "acct1", "tracked", {"name": "e", "timestamp": "2021-01-01T00:00:00Z"})
            self.seen.append("track")

    def wrote(self) -> None:
        self.seen.append("write")
        if self._thread is None:
            self._thread = threading.Thread(target=self._track)
            self._thread.start()
            deadline = time.monotonic() + 5
            while self.db._write_turns.waiting < 1:
                assert time.monotonic() < deadline
                time.sleep(0.001)

    def join(self) -> None:
        self._thread.join(5)


def test_a_write_waiting_during_an_import_batch_goes_after_the_current_hand_over(db, store, settings, monkeypatch, small_writes):
    """SQLite: a track call made while an import batch holds the write lock is served as soon as
    the hand-over being written is done — the batch ends there, its mark counting what it wrote —
    not after the whole import, as SQLite's busy handler left it (it sleeps between tries and never
    caught the moment between two batches)."""
    if db.is_postgres:
        pytest.skip("SQLite only: PostgreSQL locks rows, not the database")
    key = store_events_payload(store, 20)
    new_job(db, kind="import_events", payload_key=key, payload_format="ndjson")
    name, writer = _events_writer(db)
    probe = _TrackDuringAnImport(db, monkeypatch)

    def writing(*args):
        writer(*args)
        probe.wrote()

    monkeypatch.setattr(imports, name, writing)
    worker.run_pending_jobs(db, store, settings)
    probe.join()
    assert probe.seen == ["write", "track"] + ["write"] * 5
    assert probe.marks == [4, 10, 20]  # batch 1 ended early after its first hand-over
    assert len(event_timestamps(db)) == 21


def test_a_write_waiting_during_a_sqlite_profile_import_goes_after_the_current_part(db, store, settings, monkeypatch, small_writes):
    """SQLite's profile imports are streamed in the parsing thread (``executemany`` beside a
    parsing thread would starve): a track call made while one holds the write lock goes in after
    the part being written, and the batch's mark counts that part."""
    from opencues.storage.schema import profiles

    if db.is_postgres:
        pytest.skip("SQLite only: PostgreSQL locks rows, not the database")
    job_id = new_job(db, kind="import_profiles", payload_key=store_profiles_payload(store, 20), payload_format="ndjson")
    merge = imports._merge_profiles_sqlite
    probe = _TrackDuringAnImport(db, monkeypatch)

    def merging(*args, **kwargs):
        assert threading.current_thread() is threading.main_thread()  # inline, in the parsing thread
        merge(*args, **kwargs)
        probe.wrote()

    monkeypatch.setattr(imports, "_merge_profiles_sqlite", merging)
    worker.run_pending_jobs(db, store, settings)
    probe.join()
    assert probe.seen == ["write", "track"] + ["write"] * 5
    assert probe.marks == [4, 10, 20]
    assert job_row(db, job_id).status == "COMPLETED"
    with db.connect() as conn:
        assert len(conn.execute(select(profiles.c.user_id).where(profiles.c.user_id.like("p%"))).all()) == 20


def test_a_sqlite_profile_batch_that_held_the_lock_too_long_ends_at_its_part(db, store, settings, monkeypatch, small_writes):
    """Written inline, a batch holds SQLite's lock while its next part is parsed; past
    ``lock_seconds`` it commits at the part it wrote, leaving the lock free while the next part is
    parsed (other processes' writers cannot see the turns)."""
    if db.is_postgres:
        pytest.skip("SQLite only: PostgreSQL locks rows, not the database")
    job_id = new_job(db, kind="import_profiles", payload_key=store_profiles_payload(store, 20), payload_format="ndjson")
    monkeypatch.setattr(imports._InlineStream, "lock_seconds", 0)
    probe = _TrackDuringAnImport(db, monkeypatch)  # (no track call: it records the marks)
    worker.run_pending_jobs(db, store, settings)
    assert probe.marks == [4, 8, 10, 14, 18, 20]
    assert job_row(db, job_id).status == "COMPLETED"


def test_handler_errors_are_retried_then_the_job_fails(db, store, settings, kind):
    settings.job_max_attempts = 2
    job_id = new_job(db)

    def broken(ctx):
        raise RuntimeError("boom")

    kind.handler = broken
    worker.run_pending_jobs(db, store, settings)
    row = job_row(db, job_id)
    assert row.status == "IN_PROGRESS" and row.lease_owner is None and row.lease_expires_at > now_ms()
    expire_lease(db, job_id)
    worker.run_pending_jobs(db, store, settings)
    detail = jobs.get_job(db, "acct1", job_id)
    assert detail["status"] == "FAILED"
    assert detail["events"][-1]["name"] == "Failed" and "boom" in detail["events"][-1]["attributes"]["reason"]


def test_a_job_that_keeps_crashing_its_worker_is_given_up(db, store, settings, kind):
    settings.job_max_attempts = 1
    job_id = new_job(db)
    worker.claim(db, "dead", [kind.name], 30_000)
    expire_lease(db, job_id)
    worker.run_pending_jobs(db, store, settings)
    detail = jobs.get_job(db, "acct1", job_id)
    assert detail["status"] == "FAILED" and "gave up" in detail["events"][-1]["attributes"]["reason"]


def test_job_failed_ends_the_job_with_its_reason(db, store, settings, kind):
    job_id = new_job(db)

    def refuse(ctx):
        raise worker.JobFailed("nothing to do")

    kind.handler = refuse
    worker.run_pending_jobs(db, store, settings)
    row = job_row(db, job_id)
    assert row.status == "FAILED" and row.finished_at is not None and row.lease_owner is None
    assert jobs.job_events_of(db, job_id)[-1]["attributes"]["reason"] == "nothing to do"


def test_completed_event_carries_counters_and_handler_extras(db, store, settings, kind):
    job_id = new_job(db)

    def handler(ctx):
        with ctx.transaction() as conn:
            ctx.commit_progress(conn, consumed=3, completed=2, failed=1, errors=[(7, "bad")])
        return {"download_url": "x"}

    kind.handler = handler
    worker.run_pending_jobs(db, store, settings)
    completed = jobs.job_events_of(db, job_id)[-1]
    assert completed["name"] == "Completed"
    attributes = completed["attributes"]
    assert attributes["ingestions_completed"] == 2 and attributes["ingestions_failed"] == 1
    assert attributes["errors"] == [{"line": 7, "reason": "bad"}] and attributes["download_url"] == "x"
    assert job_row(db, job_id).status == JobStatus.COMPLETED


def test_progress_events_for_long_jobs(db, store, settings):
    settings.job_progress_seconds = 0
    key = store_events_payload(store, 25)
    job_id = new_job(db, kind="import_events", payload_key=key, payload_format="ndjson")
    worker.run_pending_jobs(db, store, settings)
    history = jobs.job_events_of(db, job_id)
    assert [e["name"] for e in history] == ["Ingesting", "Progress", "Progress", "Progress", "Completed"]
    assert [e["attributes"]["rows_processed"] for e in history[1:4]] == [10, 20, 25]


def test_shutdown_releases_the_running_job_for_another_worker(db, store, settings):
    key = store_events_payload(store, 30)
    job_id = new_job(db, kind="import_events", payload_key=key, payload_format="ndjson")
    stopping = threading.Event()
    stopping.set()
    assert worker.Worker(db, store, settings, stopping=stopping).run_once()
    row = job_row(db, job_id)
    assert row.status == "IN_PROGRESS" and row.lease_owner is None and row.attempts == 0
    assert row.lease_expires_at <= now_ms()  # released now, not left to expire
    released = jobs.job_events_of(db, job_id)[-1]
    assert released == {"name": "Released", "attributes": {"reason": "worker stopping", "rows_processed": 0}}
    worker.run_pending_jobs(db, store, settings)
    assert job_row(db, job_id).status == "COMPLETED"
    assert event_timestamps(db) == list(range(30))
    assert names(db, job_id) == ["Ingesting", "Released", "Resumed", "Completed"]


def test_lease_is_renewed_while_a_handler_runs(db, store, settings, kind):
    settings.job_lease_seconds = 1
    job_id = new_job(db)
    release = threading.Event()
    kind.handler = lambda ctx: None if release.wait(10) else None
    thread = threading.Thread(target=worker.Worker(db, store, settings).run_once)
    thread.start()
    try:
        time.sleep(1.6)
        assert worker.claim(db, "thief", [kind.name], 1000) is None
        assert job_row(db, job_id).lease_expires_at > now_ms()
    finally:
        release.set()
        thread.join(10)
    assert job_row(db, job_id).status == "COMPLETED"


def test_run_pending_jobs_waits_for_jobs_held_by_other_workers(db, store, settings, kind):
    pool = worker.WorkerPool(db, store, settings, 1)
    started = threading.Event()

    def slow(ctx):
        started.set()
        time.sleep(0.3)

    kind.handler = slow
    job_id = new_job(db)
    pool.start()
    try:
        assert started.wait(10)
        assert worker.run_pending_jobs(db, store, settings) == 0
        assert job_row(db, job_id).status == "COMPLETED"
    finally:
        pool.stop()
    assert not pool.alive()


def test_leftover_payloads_of_finished_jobs_are_swept(db, store):
    key = store_events_payload(store, 1)
    job_id = new_job(db, kind="import_events", payload_key=key, payload_format="ndjson")
    with db.begin() as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(status="COMPLETED"))
    assert worker.remove_finished_payloads(db, store) == 1
    assert not store.exists(key) and job_row(db, job_id).payload_key is None


def test_leases_of_dead_processes_on_this_host_are_reclaimed(db, kind):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = socket.gethostname()
    orphan, alive, foreign = new_job(db), new_job(db), new_job(db)
    for job_id, owner in ((orphan, f"{host}:{dead_pid}:w0/x"), (alive, f"{host}:{os.getpid()}:w0/y"),
                          (foreign, f"elsewhere:{dead_pid}:w0/z")):  # fmt: skip
        with db.begin() as conn:
            conn.execute(update(jobs_table).where(jobs_table.c.id == job_id)
                         .values(lease_owner=owner, lease_expires_at=now_ms() + 60_000))  # fmt: skip
    assert worker.reclaim_dead_local_leases(db) == [orphan]
    assert worker.claim(db, "B", [kind.name], 30_000).id == orphan
    assert worker.claim(db, "B", [kind.name], 30_000) is None


def test_export_files_are_swept_once_their_links_have_expired(db, store, settings):
    from opencues.filestore import EXPORT_FILES

    for name, age_days in (("expired", settings.export_link_ttl_days + 1), ("live", settings.export_link_ttl_days - 1)):
        key = f"{EXPORT_FILES}/acct1/{name}.csv"
        with store.writer(key) as handle:
            handle.write(b"name,timestamp,user_id\r\n")
        then = time.time() - age_days * 86_400
        os.utime(store.path(key), (then, then))
    assert worker.Worker(db, store, settings).remove_expired_exports() == 1
    assert not store.exists(f"{EXPORT_FILES}/acct1/expired.csv")
    assert store.exists(f"{EXPORT_FILES}/acct1/live.csv")


def test_a_nudged_pool_claims_a_new_job_at_once_instead_of_at_its_next_poll(db, store, settings, kind):
    pool = worker.WorkerPool(db, store, settings.model_copy(update={"job_poll_seconds": 60}), 1)
    ran = threading.Event()
    kind.handler = lambda ctx: ran.set()
    pool.start()
    try:
        time.sleep(0.3)  # the worker found nothing and is idle for a minute
        new_job(db)
        assert not ran.wait(0.5)  # polling alone: not for a minute
        pool.nudge()
        assert ran.wait(5)
    finally:
        started = time.monotonic()
        pool.stop()
        assert time.monotonic() - started < 5 and not pool.alive()  # stopping ends the idle wait too


def test_a_process_running_workers_hands_the_gil_over_within_a_millisecond(db, store, settings):
    import sys

    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    pool = worker.WorkerPool(db, store, settings, 1)
    try:
        pool.start()
        assert sys.getswitchinterval() <= worker.GIL_SWITCH_INTERVAL == 0.001
    finally:
        pool.stop()
        sys.setswitchinterval(previous)


def test_a_full_disk_is_retried_with_its_reason_in_the_job_history(db, store, settings, kind, caplog):
    settings.job_max_attempts = 2
    job_id = new_job(db)

    def full(ctx):
        raise OSError(errno.ENOSPC, "No space left on device")

    kind.handler = full
    worker.run_pending_jobs(db, store, settings)
    row = job_row(db, job_id)
    assert row.status == "IN_PROGRESS" and row.lease_owner is None  # released for a later attempt
    retrying = jobs.job_events_of(db, job_id)[-1]
    assert retrying["name"] == "Retrying" and "storage is full" in retrying["attributes"]["reason"]
    expire_lease(db, job_id)
    worker.run_pending_jobs(db, store, settings)
    detail = jobs.get_job(db, "acct1", job_id)
    assert detail["status"] == "FAILED"
    assert detail["events"][-1]["attributes"]["reason"] == "the server's storage is full (after 2 attempts)"
    logged = [r for r in caplog.records if job_id in r.getMessage()]
    assert logged and all(r.exc_info is None for r in logged)  # an outage: no tracebacks


def test_a_job_goes_on_once_space_is_back(db, store, settings, kind):
    job_id = new_job(db)
    attempts = []

    def full_once(ctx):
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError(errno.EROFS, "Read-only file system")

    kind.handler = full_once
    worker.run_pending_jobs(db, store, settings)
    expire_lease(db, job_id)
    worker.run_pending_jobs(db, store, settings)
    assert job_row(db, job_id).status == "COMPLETED"
    assert names(db, job_id) == ["Ingesting", "Retrying", "Resumed", "Completed"]
    assert "read-only" in jobs.job_events_of(db, job_id)[1]["attributes"]["reason"]
# --- counters come from what committed -----------------------------------------------------------


def test_a_failed_event_counts_only_the_batches_that_committed(db, store, settings, kind):
    job_id = new_job(db)

    def handler(ctx):
        with ctx.transaction() as conn:
            ctx.commit_progress(conn, consumed=10, completed=9, failed=1, errors=[(3, "bad")])
        with ctx.transaction() as conn:  # this batch's write fails: its transaction rolls back
            ctx.commit_progress(conn, consumed=10, completed=8, failed=2, errors=[(12, "bad"), (15, "bad")])
            raise worker.JobFailed("the segment was deleted")

    kind.handler = handler
    worker.run_pending_jobs(db, store, settings)
    row = job_row(db, job_id)
    assert row.status == "FAILED" and row.rows_done == 10 and row.ingestions_completed == 9
    failed = jobs.job_events_of(db, job_id)[-1]
    assert failed["name"] == "Failed"
    assert failed["attributes"]["ingestions_completed"] == 9 and failed["attributes"]["ingestions_failed"] == 1
    assert failed["attributes"]["errors"] == [{"line": 3, "reason": "bad"}]


def test_after_a_rolled_back_batch_the_context_keeps_the_committed_counters(db, store, settings, kind):
    settings.job_max_attempts = 1
    job_id = new_job(db)
    seen = {}

    def handler(ctx):
        with ctx.transaction() as conn:
            ctx.commit_progress(conn, consumed=5, completed=5)
        try:
            with ctx.transaction() as conn:
                ctx.commit_progress(conn, consumed=5, completed=5)
                raise RuntimeError("the write failed")
        finally:
            seen.update(rows_done=ctx.rows_done, completed=ctx.ingestions_completed)

    kind.handler = handler
    worker.run_pending_jobs(db, store, settings)
    assert seen == {"rows_done": 5, "completed": 5}
    failed = jobs.job_events_of(db, job_id)[-1]
    assert failed["name"] == "Failed" and failed["attributes"]["ingestions_completed"] == 5
    assert job_row(db, job_id).ingestions_completed == 5
