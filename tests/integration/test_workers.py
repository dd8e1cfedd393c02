"""Two `opencues worker` processes on one database never run the same job, and a killed
worker's job is taken over by the survivor."""

from __future__ import annotations

import signal
import time

import orjson
import pytest
from sqlalchemy import func, select

from opencues.settings import Settings
from opencues.storage import Database
from opencues.storage.schema import events, job_events, jobs

JOBS = 40
ROWS_PER_JOB = 50


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request):
    return request.param


def wait_until_done(db: Database, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.connect() as conn:
            pending = conn.execute(select(func.count()).select_from(jobs).where(jobs.c.status == "IN_PROGRESS")).scalar()
        if pending == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"{pending} jobs still IN_PROGRESS after {timeout}s")


def submit(http, account: str, job_number: int) -> str:
    body = b"".join(
        orjson.dumps({"user_id": f"u{i}", "name": "e", "timestamp": job_number * ROWS_PER_JOB + i}) + b"\n"
        for i in range(ROWS_PER_JOB)
    )
    response = http.post(f"/v2/accounts/{account}/import/events", content=body, headers={"Content-Type": "application/ndjson"})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def test_two_worker_processes_never_run_the_same_job(live_server, backend):
    server = live_server(
        backend=backend,
        env={"OPENCUES_JOB_WORKERS": "0", "OPENCUES_JOB_POLL_SECONDS": "0.05", "OPENCUES_IMPORT_BATCH_ROWS": "10"},
    )
    account = server.create_account("acme")
    auth = server.create_key(account)
    workers = [server.spawn("worker", "--threads", "2", "--name", f"w{n}", log_name=f"worker{n}") for n in range(2)]
    db = Database(Settings(database_url=server.database_url).resolved_database_url)
    try:
        with server.client(auth=auth) as http:
            job_ids = [submit(http, account, n) for n in range(JOBS)]
        wait_until_done(db, timeout=120)
        with db.connect() as conn:
            rows = conn.execute(select(jobs.c.id, jobs.c.status, jobs.c.attempts, jobs.c.rows_done)).all()
            starts = dict(
                conn.execute(
                    select(job_events.c.job_id, func.count())
                    .where(job_events.c.name.in_(["Ingesting", "Resumed"]))
                    .group_by(job_events.c.job_id)
                ).all()
            )
            total, distinct = conn.execute(select(func.count(), func.count(func.distinct(events.c.timestamp)))).one()
        assert sorted(r.id for r in rows) == sorted(job_ids)
        assert {(r.status, r.attempts, r.rows_done) for r in rows} == {("COMPLETED", 1, ROWS_PER_JOB)}
        assert starts == {job_id: 1 for job_id in job_ids}
        assert (total, distinct) == (JOBS * ROWS_PER_JOB, JOBS * ROWS_PER_JOB)
        for process in workers:
            assert process.poll() is None, process.log_path.read_text()
        # SIGTERM: each worker stops cleanly.
        for process in workers:
            assert server.kill_spawned(process, signal.SIGTERM) == 0, process.log_path.read_text()
    finally:
        db.dispose()


def test_a_killed_workers_job_is_finished_by_another(live_server, backend):
    server = live_server(
        backend=backend,
        env={
            "OPENCUES_JOB_WORKERS": "0",
            "OPENCUES_JOB_POLL_SECONDS": "0.05",
            "OPENCUES_IMPORT_BATCH_ROWS": "20",
            "OPENCUES_JOB_LEASE_SECONDS": "2",
        },
    )
    account = server.create_account("acme")
    auth = server.create_key(account)
    db = Database(Settings(database_url=server.database_url).resolved_database_url)
    rows = 40_000
    body = b"".join(orjson.dumps({"user_id": "u", "name": "e", "timestamp": i}) + b"\n" for i in range(rows))
    try:
        with server.client(auth=auth) as http:
            response = http.post(f"/v2/accounts/{account}/import/events", content=body, headers={"Content-Type": "application/ndjson"})
            job_id = response.json()["job_id"]
        first = server.spawn("worker", "--name", "first")
        deadline = time.monotonic() + 60
        while True:
            with db.connect() as conn:
                done = conn.execute(select(jobs.c.rows_done).where(jobs.c.id == job_id)).scalar()
            if done > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        server.kill_spawned(first)
        assert 0 < done < rows
        # The survivor resumes at the killed worker's last committed batch, whatever its own batch
        # size (rows are skipped by count): in batches of 20 the ~40,000 rows left took ~2,000
        # transactions, most of the test's time, and proved nothing more.
        server.env = {**server.env, "OPENCUES_IMPORT_BATCH_ROWS": "10000"}
        server.spawn("worker", "--name", "second")
        wait_until_done(db, timeout=120)
        with db.connect() as conn:
            status, attempts = conn.execute(select(jobs.c.status, jobs.c.attempts).where(jobs.c.id == job_id)).one()
            total, distinct = conn.execute(select(func.count(), func.count(func.distinct(events.c.timestamp)))).one()
        assert (status, attempts) == ("COMPLETED", 2)
        assert (total, distinct) == (rows, rows)
    finally:
        db.dispose()
