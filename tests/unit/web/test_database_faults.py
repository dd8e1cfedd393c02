"""The database connection dropped mid-request and mid-job (PostgreSQL: ``pg_terminate_backend``
from another connection — what a failover, a restart or an administrator does).

A request whose connection is killed answers a clean Problem Details 503 with ``Retry-After`` —
it does not hang — and the next request works; a job whose connection is killed mid-batch is
retried and completes with every row exactly once. (SQLite has no connection to lose: its
faults are the lock timeout, mapped to the same 503, and a crash, in test_crash_recovery.py.)
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from opencues import jobs, worker
from opencues.web.app import create_app
from opencues.web.errors import database_unavailable
from tests.conftest import assert_problem, make_account
from tests.in_process_client import InProcessClient

ON_POSTGRES = pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
TIMEOUT = 20  # seconds a request may take before it counts as hung


def _libpq(database_url: str) -> str:
    return "postgresql://" + database_url.split("://", 1)[1]


class Blocker:
    """Holds an exclusive lock on a table from its own connection, so that a request touching the
    table waits; then finds that waiting backend and terminates it from a third connection."""

    def __init__(self, database_url: str):
        self.url = _libpq(database_url)
        self.holder = psycopg.connect(self.url)
        self.killer = psycopg.connect(self.url, autocommit=True)

    def lock(self, table: str) -> None:
        self.holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")

    def terminate_waiter(self, timeout: float = TIMEOUT) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.killer.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                " AND pid <> %s LIMIT 1",
                (self.holder.info.backend_pid,),
            ).fetchone()
            if row:
                assert self.killer.execute("SELECT pg_terminate_backend(%s)", (row[0],)).fetchone()[0]
                return row[0]
            time.sleep(0.02)
        raise AssertionError("no request ever waited for the lock")

    def release(self) -> None:
        self.holder.rollback()

    def close(self) -> None:
        self.holder.close()
        self.killer.close()


@pytest.fixture
def blocker(database_url):
    made = Blocker(database_url)
    yield made
    made.close()


@pytest.fixture
def server(settings, db):
    """The app with an in-process client that reports a 500 as a response (not an exception)."""
    app = create_app(settings.model_copy(update={"job_workers": 0}), db)
    with InProcessClient(app, raise_server_exceptions=False) as client:
        yield client


def _in_thread(call):
    """Run ``call`` in a thread; returns a function that waits (bounded) for its result."""
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("value", call()), daemon=True)
    thread.start()

    def result():
        thread.join(TIMEOUT)
        assert not thread.is_alive(), f"the request hung for more than {TIMEOUT} s after its connection was killed"
        return outcome["value"]

    return result


REQUESTS = {
    # name: (table to lock, method, path, body, expected status of the retry)
    "track an event (group commit)": ("events", "POST", "users/u1/events", {"name": "n", "timestamp": "2021-07-16T16:02:50.037Z"}, 200),
    "create a segment": ("segments", "POST", "segments", {"name": "s"}, 201),
    "list segments": ("segments", "GET", "segments", None, 200),
    "update a profile": ("profiles", "PATCH", "users/u1/profile", {"plan": "pro"}, 200),
    "read a profile (the event loop's connection)": ("profiles", "GET", "users/u1/profile", None, 404),
    "read a history (the event loop's connection)": ("events", "GET", "users/u1/events", None, 200),
    "import events (job row)": ("jobs", "POST", "import/events", [{"user_id": "u", "name": "n", "timestamp": 0}], 202),
}


@ON_POSTGRES
@pytest.mark.parametrize("name", list(REQUESTS))
def test_a_request_whose_connection_is_killed_answers_503_and_the_next_one_works(db, server, blocker, name):
    table, method, path, body, retry_status = REQUESTS[name]
    creds = make_account(db, "acct1")
    url = f"/v2/accounts/acct1/{path}"
    send = lambda: server.request(method, url, json=body, auth=creds.auth)  # noqa: E731
    assert send().status_code == retry_status  # connections are open and pooled before the fault

    blocker.lock(table)
    answer = _in_thread(send)
    try:
        blocker.terminate_waiter()
    finally:
        blocker.release()
    response = answer()
    assert_problem(response, 503, "database")
    assert response.headers["Retry-After"] == "1"

    assert send().status_code == retry_status
    assert send().status_code == retry_status


@ON_POSTGRES
def test_a_killed_track_is_not_stored_and_its_retry_is_stored_once(db, server, blocker):
    creds = make_account(db, "acct1")
    url = "/v2/accounts/acct1/users/u1/events"
    body = {"name": "killed", "timestamp": "2021-07-16T16:02:50.037Z"}
    blocker.lock("events")
    answer = _in_thread(lambda: server.post(url, json=body, auth=creds.auth))
    try:
        blocker.terminate_waiter()
    finally:
        blocker.release()
    assert answer().status_code == 503
    assert server.post(url, json=body, auth=creds.auth).status_code == 200
    history = server.get(url, auth=creds.auth).json()
    assert [e["name"] for e in history] == ["killed"]


ROWS = 1_000
BATCH = 200


@ON_POSTGRES
def test_a_job_whose_connection_is_killed_mid_batch_resumes_with_every_row_once(db, settings, database_url, monkeypatch):
    """Batches 1 and 2 commit; in batch 3 (its progress already written in its transaction) the
    worker's connection is terminated from another connection. The attempt fails; the next
    attempt resumes from batch 3 and the job completes with each row written exactly once."""
    settings = settings.model_copy(update={"import_batch_rows": BATCH, "job_workers": 0})
    creds = make_account(db, "acct1")
    app = create_app(settings, db)
    rows = [{"user_id": f"u{i % 37}", "name": "imported", "timestamp": 1_600_000_000_000 + i} for i in range(ROWS)]
    with InProcessClient(app) as client:
        accepted = client.post("/v2/accounts/acct1/import/events", json=rows, auth=creds.auth)
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]

    killer = psycopg.connect(_libpq(database_url), autocommit=True)
    original = worker.JobContext.commit_progress
    calls = {"n": 0}

    def commit_progress_then_lose_the_connection(ctx, conn, **kwargs):
        original(ctx, conn, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            assert killer.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]

    monkeypatch.setattr(worker.JobContext, "commit_progress", commit_progress_then_lose_the_connection)
    store = app.state.file_store
    runner = worker.Worker(db, store, settings, name="fault-test")
    assert runner.run_once()  # the attempt that loses its connection
    job = jobs.get_job(db, "acct1", job_id)
    assert job["status"] == "IN_PROGRESS"
    monkeypatch.setattr(worker.JobContext, "commit_progress", original)

    with db.begin() as conn:  # skip the retry back-off
        conn.exec_driver_sql("UPDATE jobs SET lease_expires_at = 0 WHERE id = %(id)s", {"id": job_id})
    deadline = time.monotonic() + TIMEOUT
    while jobs.get_job(db, "acct1", job_id)["status"] == "IN_PROGRESS":
        assert time.monotonic() < deadline, "the job did not resume"
        runner.run_once() or time.sleep(0.05)
    killer.close()

    job = jobs.get_job(db, "acct1", job_id)
    assert job["status"] == "COMPLETED", job
    names = [e["name"] for e in job["events"]]
    assert names[0] == "Ingesting" and "Resumed" in names and names[-1] == "Completed"
    completed = job["events"][-1]["attributes"]
    assert completed["ingestions_completed"] == ROWS and completed["ingestions_failed"] == 0
    with db.connect() as conn:
        stored = conn.exec_driver_sql("SELECT user_id, timestamp FROM events WHERE account_id = 'acct1'").all()
    assert len(stored) == ROWS
    assert sorted(stored) == sorted((r["user_id"], r["timestamp"]) for r in rows)


def test_only_lost_connections_count_as_unavailable():
    assert database_unavailable(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert database_unavailable(psycopg.errors.AdminShutdown("terminating connection due to administrator command"))
    assert not database_unavailable(psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum"))
    assert not database_unavailable(psycopg.errors.UniqueViolation("duplicate key"))
    assert not database_unavailable(ValueError("a bug"))
