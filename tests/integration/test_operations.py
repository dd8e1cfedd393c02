"""Running it in production: metrics across server processes, logs without secrets, SIGTERM."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time

import httpx
import orjson
from sqlalchemy import select

from opencues.storage.schema import events, job_events, jobs

from tests.integration.conftest import tls_context


def _counter(text: str, route: str, status: str) -> float:
    pattern = re.compile(
        r'^opencues_http_requests_total\{method="GET",route="' + re.escape(route) + r'",status="' + status + r'"\} (\S+)$', re.M
    )
    match = pattern.search(text)
    return float(match.group(1)) if match else 0.0


def test_metrics_add_up_over_every_server_process(live_server):
    server = live_server(args=["--workers", "2"])
    account = server.create_account("acme")
    auth = server.create_key(account)
    route = "/v2/accounts/{account_id}/flows"
    with server.client(auth=auth) as http:
        for _ in range(30):  # fresh connections spread over both processes
            assert httpx.get(server.base_url + f"/v2/accounts/{account}/flows", auth=auth, verify=tls_context()).status_code == 200
        scrapes = [http.get("/metrics").text for _ in range(6)]
    # Whichever process answers the scrape, it reports both processes' requests.
    assert {_counter(text, route, "200") for text in scrapes} == {30.0}
    assert "opencues_jobs_queued" in scrapes[0]


def _import(http, account: str, rows: int) -> str:
    body = b"".join(orjson.dumps({"user_id": f"u{i % 50}", "name": "e", "timestamp": i}) + b"\n" for i in range(rows))
    response = http.post(f"/v2/accounts/{account}/import/events", content=body, headers={"Content-Type": "application/ndjson"})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def _wait_for(db, predicate, timeout: float = 120, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.connect() as conn:
            value = predicate(conn)
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out")


def test_sigterm_hands_a_running_import_to_a_waiting_worker_at_once(live_server, backend):
    lease = 60
    server = live_server(backend=backend, env={
        "OPENCUES_JOB_LEASE_SECONDS": str(lease), "OPENCUES_IMPORT_BATCH_ROWS": "500", "OPENCUES_JOB_POLL_SECONDS": "0.1",
    })  # fmt: skip
    account = server.create_account("acme")
    auth = server.create_key(account)
    rows = 120_000
    db = server.database()
    try:
        # A second worker process, the standby, is up first and then paused (SIGSTOP, before any
        # job exists: it holds no lock), so that the server's own worker claims the import and the
        # SIGTERM below follows the standby's start by milliseconds, not by the ~1.5 s a start
        # takes: on a fast machine the whole import (1.6 s) once ended inside that start. The
        # standby writes what is left in larger batches: it resumes at the released batch whatever
        # its own batch size, and the rest of 120,000 rows in batches of 500 was most of the
        # test's time.
        server.env = {**server.env, "OPENCUES_IMPORT_BATCH_ROWS": "20000"}
        waiting = server.spawn("worker", "--name", "standby")
        server.wait_spawned(waiting)  # the standby is up and polling
        os.killpg(waiting.pid, signal.SIGSTOP)
        with server.client(auth=auth) as http:
            job_id = _import(http, account, rows)
        _wait_for(db, lambda c: c.execute(select(jobs.c.rows_done).where(jobs.c.id == job_id)).scalar())
        os.killpg(waiting.pid, signal.SIGCONT)  # the job's lease is held: it waits for work
        with db.connect() as conn:
            assert conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar() == "IN_PROGRESS"
        sigterm = time.monotonic()
        assert server.stop() in (0, -signal.SIGTERM), server.output()  # uvicorn re-raises the signal it handled
        try:
            _wait_for(db, lambda c: c.execute(
                select(job_events.c.id).where(job_events.c.job_id == job_id, job_events.c.name == "Resumed")
            ).first())  # fmt: skip
        except AssertionError:  # (seen once in CI: both processes' logs say where each stood)
            with db.connect() as conn:
                row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
            raise AssertionError(
                f"never resumed; job {dict(row._mapping)}\n--- server:\n{server.output()[-4000:]}"
                f"\n--- standby:\n{waiting.log_path.read_text(errors='replace')[-4000:]}"
            ) from None
        resumed_after = time.monotonic() - sigterm
        assert resumed_after < lease / 6, f"resumed {resumed_after:.1f}s after SIGTERM"
        _wait_for(db, lambda c: c.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar() == "COMPLETED")
        with db.connect() as conn:
            names = conn.execute(
                select(job_events.c.name).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
            ).scalars().all()
            stored = len(conn.execute(select(events.c.timestamp)).all())
        assert "Released" in names and names.index("Released") < names.index("Resumed")
        assert stored == rows
        assert "released at row" in server.output()
        assert "resumed by" in waiting.log_path.read_text()
    finally:
        db.dispose()


def test_no_secret_reaches_a_log_line(live_server, backend):
    smtp_password = "smtp-Pa55word-xyz"
    signing_secret = "signing-secret-abc123"
    server = live_server(backend=backend, start=False, env={
        "OPENCUES_SMTP_URL": f"smtp://mailer:{smtp_password}@127.0.0.1:9",  # nothing listens: the mail fails, logged
        "OPENCUES_SECRET_KEY": signing_secret,
        "OPENCUES_LOG_LEVEL": "DEBUG",
        "OPENCUES_LOG_FORMAT": "json",
    })  # fmt: skip
    db_password = None
    if backend == "postgres":  # trust authentication: the password is accepted and ignored
        db_password = "db-Pa55word-qrs"
        server.env["OPENCUES_DATABASE_URL"] = server.env["OPENCUES_DATABASE_URL"].replace("postgres@", f"postgres:{db_password}@")
    server.start()
    account = server.create_account("acme")
    key, secret = server.create_key(account)
    with server.client(auth=(key, secret)) as http:
        job_id = _import(http, account, 200)
        assert http.get(f"/v2/accounts/{account}/flows").status_code == 200
        assert http.get(f"/v2/accounts/{account}/flows", auth=(key, "wrong-secret-777")).status_code == 401
        bearer = {"Authorization": "Bearer bearer-token-555"}
        assert httpx.get(f"{server.base_url}/v2/accounts/{account}/flows", headers=bearer, verify=tls_context()).status_code == 401
        response = http.post(f"/v2/accounts/{account}/export/events", json={
            "email": ["someone@example.com"], "format": "json", "conditions": [], "start_time": "1970-01-01", "end_time": "2030-01-01",
        })  # fmt: skip
        assert response.status_code == 202, response.text
        export_url = response.json()["job_url"]
        deadline = time.monotonic() + 60
        while True:
            job = http.get(export_url).json()
            imported = http.get(f"/v2/accounts/{account}/jobs/{job_id}").json()
            if (job["status"], imported["status"]) == ("COMPLETED", "COMPLETED") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        completed = next(e for e in job["events"] if e["name"] == "Completed")["attributes"]
        assert "email_error" in completed  # the SMTP failure was logged, with its exception
        download = completed["download_url"]
        assert httpx.get(download, verify=tls_context()).status_code == 200
    server.stop()
    token = download.rsplit("/", 1)[1]
    log = server.output()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(line.get("logger") == "opencues.access" and line.get("request_id") for line in lines)
    assert any("completed" in line["message"] and line.get("job_id") == job_id for line in lines)
    secrets = {
        "API secret": secret,
        "basic credentials": base64.b64encode(f"{key}:{secret}".encode()).decode(),
        "wrong secret": "wrong-secret-777",
        "bearer token": "bearer-token-555",
        "SMTP password": smtp_password,
        "signing secret": signing_secret,
        "download token": token,
    }
    if db_password:
        secrets["database password"] = db_password
    for what, value in secrets.items():
        assert value not in log, f"the {what} reached the log"


def test_a_worker_process_serves_its_metrics(live_server):
    from tests.integration.conftest import free_port

    server = live_server(env={"OPENCUES_JOB_WORKERS": "0", "OPENCUES_JOB_POLL_SECONDS": "0.1"})
    account = server.create_account("acme")
    auth = server.create_key(account)
    port = free_port()
    server.env = {**server.env, "OPENCUES_WORKER_METRICS_PORT": str(port)}
    server.spawn("worker")
    db = server.database()
    try:
        with server.client(auth=auth) as http:
            job_id = _import(http, account, 300)
        _wait_for(db, lambda c: c.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar() == "COMPLETED")
    finally:
        db.dispose()
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", verify=tls_context()).text
    assert 'opencues_jobs_total{kind="import_events",status="completed"} 1.0' in text
    assert 'opencues_job_rows_total{kind="import_events",outcome="ingested"} 300.0' in text
    assert "# TYPE opencues_jobs_queued gauge" in text
