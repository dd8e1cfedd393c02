"""opencues.metrics: the queue read from the database at scrape time, job counters, multiprocess."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client import CollectorRegistry, REGISTRY
from sqlalchemy import update

from opencues import jobs, metrics, worker
from opencues.filestore import open_file_store
from opencues.storage.schema import jobs as jobs_table
from opencues.timestamps import now_ms


def queue_samples(db) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.JobQueueCollector(db))
    return {(s.name, s.labels.get("kind")): s.value for m in registry.collect() for s in m.samples}


def test_queue_depth_running_and_oldest_age_come_from_the_database(db):
    now = now_ms()
    with db.begin() as conn:
        old = jobs.create_job(conn, "a", "import_events")
        jobs.create_job(conn, "a", "import_events")
        held = jobs.create_job(conn, "a", "export_events")
        done = jobs.create_job(conn, "a", "export_events")
        conn.execute(update(jobs_table).where(jobs_table.c.id == old).values(started_at=now - 90_000))
        conn.execute(update(jobs_table).where(jobs_table.c.id == held).values(lease_owner="w", lease_expires_at=now + 60_000))
        conn.execute(update(jobs_table).where(jobs_table.c.id == done).values(status="COMPLETED"))
    samples = queue_samples(db)
    assert samples[("opencues_jobs_queued", "import_events")] == 2
    assert samples[("opencues_jobs_running", "export_events")] == 1
    assert ("opencues_jobs_queued", "export_events") not in samples
    assert 89 <= samples[("opencues_jobs_oldest_queued_age_seconds", "import_events")] < 120


def test_an_expired_lease_counts_as_queued(db):
    with db.begin() as conn:
        job_id = jobs.create_job(conn, "a", "import_profiles")
        conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(lease_owner="dead", lease_expires_at=now_ms() - 1))
    assert queue_samples(db)[("opencues_jobs_queued", "import_profiles")] == 1


def test_jobs_and_rows_are_counted_by_kind_and_outcome(db, settings, tmp_path):
    store = open_file_store(settings)
    from tests.unit.test_worker import store_events_payload

    key = store_events_payload(store, 7)
    with db.begin() as conn:
        jobs.create_job(conn, "acct", "import_events", payload_key=key, payload_format="ndjson")

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (value("opencues_jobs_total", kind="import_events", status="completed"),
              value("opencues_job_rows_total", kind="import_events", outcome="ingested"),
              value("opencues_jobs_claimed_total", kind="import_events"))  # fmt: skip
    worker.run_pending_jobs(db, store, settings)
    assert value("opencues_jobs_total", kind="import_events", status="completed") == before[0] + 1
    assert value("opencues_job_rows_total", kind="import_events", outcome="ingested") == before[1] + 7
    assert value("opencues_jobs_claimed_total", kind="import_events") == before[2] + 1


def test_database_pool_use_is_a_gauge(db):
    metrics.watch_pool(db.engine)
    before = REGISTRY.get_sample_value("opencues_db_pool_connections_in_use")
    with db.connect():
        assert REGISTRY.get_sample_value("opencues_db_pool_connections_in_use") == before + 1
    assert REGISTRY.get_sample_value("opencues_db_pool_connections_in_use") == before


CHILD = """
import sys
from opencues import metrics
metrics.REQUESTS.labels("/r", "GET", "200").inc(int(sys.argv[1]))
metrics.POOL_IN_USE.inc(5)
"""


def test_multiprocess_mode_sums_processes_and_forgets_dead_ones_gauges(tmp_path, db):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in (2, 3):
        subprocess.run([sys.executable, "-c", CHILD, str(count)], env=env, check=True)
    render = subprocess.run(
        [sys.executable, "-c", "import sys; from opencues import metrics; from opencues.storage import Database;"
         "import os; print(os.getpid()); sys.stdout.write(metrics.render(Database(sys.argv[1]))[0].decode())", db.engine.url.render_as_string(False)],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert 'opencues_http_requests_total{method="GET",route="/r",status="200"} 5.0' in render
    # Both writers have exited: their live gauges are dropped, their counters kept.
    assert "opencues_db_pool_connections_in_use 0.0" in render
    renderer = render.split("\n", 1)[0]
    assert [p.name for p in tmp_path.glob("gauge_live*")] == [f"gauge_livesum_{renderer}.db"]
