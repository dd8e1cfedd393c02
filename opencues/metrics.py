"""Prometheus metrics: what ``/metrics`` (and ``opencues worker``'s metrics port) expose.

The counters and histograms live in each process. ``opencues serve --workers N`` runs N processes,
so it points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before they start: each process then
writes its values to memory-mapped files there and a scrape, answered by any one process, sums them
all (``prometheus_client``'s multiprocess mode). Queue depth and the age of the oldest queued job
are not counted anywhere: they are read from the database at scrape time, so every process (and
every machine) reports the same truth.

Import this module only after the environment is final: ``prometheus_client`` picks its storage
(in memory, or the multiprocess files) when it is first imported.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, or_, select

from opencues import timestamps
from opencues.jobs import JobStatus
from opencues.storage.schema import jobs as jobs_table

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Track answers in ~1 ms; exports and imports upload for seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "opencues_http_requests_total", "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)  # fmt: skip
LATENCY = Histogram(
    "opencues_http_request_duration_seconds", "Time to answer an HTTP request, by route template and method.",
    ["route", "method"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
RATE_LIMITED = Counter("opencues_rate_limit_rejections_total", "Requests refused (429) by the per-API-key rate limit.")
JOBS = Counter(
    "opencues_jobs_total",
    "Job attempts that ended, by kind and status: completed, failed, released (shutdown), retried, lease_lost.",
    ["kind", "status"],
)
JOBS_CLAIMED = Counter("opencues_jobs_claimed_total", "Jobs claimed by a worker (a resumed job counts again).", ["kind"])
JOB_ROWS = Counter(
    "opencues_job_rows_total", "Rows processed by jobs, by kind and outcome: ingested, failed, filtered.",
    ["kind", "outcome"],
)  # fmt: skip
EXPORT_ROWS = Counter("opencues_export_rows_total", "Rows written to export files.")
EXPORT_BYTES = Counter("opencues_export_bytes_total", "Bytes of export files written (after compression).")
POOL_IN_USE = Gauge(
    "opencues_db_pool_connections_in_use", "Database connections checked out of the pools, over live processes.",
    multiprocess_mode="livesum",
)  # fmt: skip


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class JobQueueCollector:
    """Queue depth, running jobs and the oldest queued job's age, read from the jobs table."""

    def __init__(self, db):
        self.db = db

    def collect(self):
        now = timestamps.now_ms()
        open_jobs = jobs_table.c.status == JobStatus.IN_PROGRESS.value
        free = or_(jobs_table.c.lease_expires_at.is_(None), jobs_table.c.lease_expires_at < now)
        queued = GaugeMetricFamily("opencues_jobs_queued", "Jobs waiting for a worker, by kind.", labels=["kind"])
        oldest = GaugeMetricFamily(
            "opencues_jobs_oldest_queued_age_seconds", "Age of the oldest job waiting for a worker, by kind.", labels=["kind"]
        )
        running = GaugeMetricFamily("opencues_jobs_running", "Jobs a worker holds a lease on, by kind.", labels=["kind"])
        with self.db.connect() as conn:
            waiting = conn.execute(
                select(jobs_table.c.kind, func.count(), func.min(jobs_table.c.started_at))
                .where(open_jobs, free).group_by(jobs_table.c.kind)
            ).all()  # fmt: skip
            held = conn.execute(
                select(jobs_table.c.kind, func.count()).where(open_jobs, ~free).group_by(jobs_table.c.kind)
            ).all()
        for kind, count, first in waiting:
            queued.add_metric([kind], count)
            oldest.add_metric([kind], max(0.0, (now - first) / 1000))
        for kind, count in held:
            running.add_metric([kind], count)
        return [queued, oldest, running]


_GAUGE_FILE = re.compile(r"gauge_live\w*_(\d+)\.db$")


def forget_dead_processes(directory: str) -> None:
    """Drop the live gauges of server processes that are gone (a crashed, restarted worker);
    their counters stay, so totals never go down."""
    from prometheus_client import multiprocess

    for path in Path(directory).glob("gauge_live*.db"):
        match = _GAUGE_FILE.search(path.name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def render(db) -> tuple[bytes, str]:
    """The exposition text of this process — or of all of ``serve``'s processes — plus the queue."""
    from prometheus_client import REGISTRY

    queue = CollectorRegistry(auto_describe=False)
    queue.register(JobQueueCollector(db))
    directory = multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        forget_dead_processes(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, directory)
        return generate_latest(registry) + generate_latest(queue), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY) + generate_latest(queue), CONTENT_TYPE_LATEST


def watch_pool(engine) -> None:
    """Count the engine's checked-out connections in ``POOL_IN_USE`` — once, however many apps
    share the engine (each app's start calls this)."""
    from sqlalchemy import event

    if not event.contains(engine, "checkout", _checked_out):
        event.listen(engine, "checkout", _checked_out)
        event.listen(engine, "checkin", _checked_in)


def _checked_out(*_) -> None:
    POOL_IN_USE.inc()


def _checked_in(*_) -> None:
    POOL_IN_USE.dec()


def worker_registry(db) -> CollectorRegistry:
    """What ``opencues worker`` serves on its metrics port: its own counters and the queue."""
    from prometheus_client import REGISTRY

    REGISTRY.register(JobQueueCollector(db))
    return REGISTRY
