"""Job workers: claim a job with a lease, run its handler, finish it — exactly once per row.

Where workers run
  ``opencues serve`` starts ``settings.job_workers`` worker threads in each server process
  (``WorkerPool``, from the app's lifespan); ``opencues worker`` runs them in a process of their
  own, any number of them on any number of machines against the same database. Tests drive jobs
  deterministically with ``run_pending_jobs(db, file_store, settings)``, which runs every
  claimable job in the calling thread and then waits for jobs other workers hold.

Claiming
  PostgreSQL: ``UPDATE jobs … WHERE id = (SELECT id … FOR UPDATE SKIP LOCKED)``; SQLite (one
  writer at a time): the same UPDATE without the lock clause — atomic either way. A claim sets
  ``lease_owner`` (a token unique to this claim) and ``lease_expires_at``; a background thread
  renews the lease every third of ``job_lease_seconds``. A job whose lease expired (its worker
  died) is claimable again and resumes from its progress mark.

Handler contract (the import handlers in ``opencues.imports``; the export registers the same way)::

    from opencues import worker

    def run_export(ctx: worker.JobContext) -> dict | None:
        ...
        with ctx.transaction() as conn:             # one transaction per batch
            ctx.commit_progress(conn, consumed=n, completed=n)   # fenced; call it first
            ...write the batch with conn...
        return {"extra": "attributes"}              # merged into the `Completed` event

    worker.register("export_events", "Export Events", run_export, start_event=None)

  ``JobContext`` gives ``db``, ``file_store``, ``settings``, ``job`` (``opencues.jobs.Job``:
  ``id, account_id, kind, params, payload_key, payload_format, rows_done, attempts …``),
  ``rows_done`` (the progress mark: resume by skipping that many items), ``transaction()``,
  ``commit_progress(conn, consumed=, completed=, failed=, requests_failed=, errors=, filtered=)`` (counters
  are deltas; errors are ``(line, reason)`` pairs or objects with ``.line``/``.reason``; it raises
  ``LeaseLost`` — rolling the batch back — when another worker owns the job, and ``Interrupted``
  when this worker is shutting down: let both propagate), ``add_event(name, attributes)``,
  ``heartbeat()``. A handler that writes a batch's rows before its mark (the events import
  streams them in as they are parsed) calls ``hold_lease(conn)`` first — it proves the lease
  and, on SQLite, takes the write lock — and ``raise_if_stopping()`` between writes.
  Raise ``JobFailed(reason)`` to end the job FAILED with a ``Failed`` event. Any other exception
  is retried (the job is released) up to ``job_max_attempts`` times; a full or read-only disk
  (``errors.storage_fault``) also records a ``Retrying`` event saying so.

  The worker adds the start event (``Ingesting`` unless ``start_event`` says otherwise) on the
  first attempt, ``Resumed`` on later ones, a ``Progress`` event at most every
  ``job_progress_seconds`` from ``commit_progress``, and ``Completed`` with
  ``ingestions_completed, ingestions_failed, requests_failed, runtime_ms`` (+ ``ingestions_filtered``
  for kinds registered with ``filters=True``: what the account's ingestion rules dropped; + ``errors``,
  the first ``job_error_samples`` row errors, when there were any). The job's stored payload is
  deleted once it is COMPLETED or FAILED.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from sqlalchemy import Connection, and_, or_, select, update

from opencues import jobs, metrics, timestamps
from opencues.errors import storage_fault
from opencues.filestore import EXPORT_FILES
from opencues.jobs import Job, JobStatus
from opencues.storage import Database
from opencues.storage.schema import control_job_modes, job_events
from opencues.storage.schema import jobs as jobs_table

log = logging.getLogger("opencues.worker")

# Modules whose import registers handlers; a missing optional one is skipped.
HANDLER_MODULES = ("opencues.imports", "opencues.exports", "opencues.segment_exports", "opencues.analytics")


class LeaseLost(Exception):
    """Another worker owns the job now: abandon it without writing anything more."""


class Interrupted(Exception):
    """This worker is shutting down: release the job so another worker resumes it."""


def _storage_reason(fault) -> str:
    what = "full" if fault.status == 507 else "read-only"
    return f"the server's storage is {what}"


class JobFailed(Exception):
    """The job cannot succeed (e.g. its segment was deleted): end it FAILED with this reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Registration:
    kind: str
    handler: Callable[["JobContext"], dict | None]
    start_event: str | None


HANDLERS: dict[str, Registration] = {}
# Kinds whose ``Completed`` event reports ``ingestions_filtered`` (imports under ingestion rules).
FILTERING_KINDS: set[str] = set()


def register(
    kind: str, display_name: str, handler: Callable, *, start_event: str | None = "Ingesting", filters: bool = False
) -> None:
    """Make workers run ``handler`` for jobs of ``kind`` (shown to users as ``display_name``);
    ``filters``: it applies the ingestion rules and reports ``ingestions_filtered``."""
    jobs.JOB_NAMES[kind] = display_name
    HANDLERS[kind] = Registration(kind, handler, start_event)
    if filters:
        FILTERING_KINDS.add(kind)


def load_handlers() -> dict[str, Registration]:
    for module in HANDLER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return HANDLERS


def _error_dict(error) -> dict:
    if isinstance(error, dict):
        return {"line": error.get("line"), "reason": error.get("reason")}
    if isinstance(error, tuple):
        return {"line": error[0], "reason": error[1]}
    return {"line": error.line, "reason": error.reason}


class JobContext:
    """What a handler gets: the job, the stores, and the fenced way to commit progress."""

    def __init__(self, db: Database, file_store, settings, job: Job, owner: str, stopping: threading.Event):
        self.db = db
        self.file_store = file_store
        self.settings = settings
        self.job = job
        self.owner = owner
        self._stopping = stopping
        self.rows_done = job.rows_done
        self.ingestions_completed = job.ingestions_completed
        self.ingestions_failed = job.ingestions_failed
        self.requests_failed = job.requests_failed
        self.ingestions_filtered = job.ingestions_filtered
        self.row_errors: list[dict] = list(job.row_errors or [])
        self._started = time.monotonic()
        self._last_progress_event = self._started
        # Counters ``commit_progress`` wrote in the current ``transaction()`` of each thread: they
        # become the context's counters only once that transaction has committed.
        self._staged = threading.local()

    @property
    def lease_ms(self) -> int:
        return int(self.settings.job_lease_seconds * 1000)

    def runtime_ms(self) -> int:
        return self.job.runtime_ms + int((time.monotonic() - self._started) * 1000)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction for the job's writes; on SQLite it waits its turn at the write lock
        behind this process's earlier writers (``Database.write_turn``)."""
        staged = self._staged
        outer = getattr(staged, "inside", False), getattr(staged, "values", None)  # a transaction in a transaction
        staged.inside, staged.values = True, None
        try:
            with self.db.write_turn(), self.db.begin() as conn:
                yield conn
            if staged.values is not None:  # committed: the counters it wrote are now true
                self._take(staged.values)
        finally:
            staged.inside, staged.values = outer

    def _take(self, values: dict) -> None:
        self.rows_done = values["rows_done"]
        self.ingestions_completed = values["ingestions_completed"]
        self.ingestions_failed = values["ingestions_failed"]
        self.requests_failed = values["requests_failed"]
        self.ingestions_filtered = values["ingestions_filtered"]
        self.row_errors = values["row_errors"]

    def _fence(self, conn: Connection, **values) -> None:
        values.setdefault("lease_expires_at", timestamps.now_ms() + self.lease_ms)
        if not jobs.progress_update(conn, self.job.id, self.owner, **values):
            raise LeaseLost(self.job.id)

    def hold_lease(self, conn: Connection) -> None:
        """Prove the lease (and, on SQLite, take the write lock) in ``conn``'s transaction before
        writing into it, for a writer that streams rows in ahead of ``commit_progress``."""
        self.raise_if_stopping()
        self._fence(conn)

    def check_lease(self, conn: Connection) -> None:
        """``hold_lease`` without locking the job's row, for a writer whose earlier batch, on another
        connection, holds that lock until it commits (PostgreSQL's events imports); its own
        ``commit_progress`` is the fence."""
        self.raise_if_stopping()
        if not jobs.holds_lease(conn, self.job.id, self.owner):
            raise LeaseLost(self.job.id)

    def raise_if_stopping(self) -> None:
        """``Interrupted`` when this worker is shutting down: the open batch is rolled back."""
        if self._stopping.is_set():
            raise Interrupted(self.job.id)

    def commit_progress(
        self,
        conn: Connection,
        *,
        consumed: int,
        completed: int = 0,
        failed: int = 0,
        requests_failed: int = 0,
        errors=(),
        filtered: int = 0,
    ) -> None:
        """Advance the progress mark by ``consumed`` items in ``conn``'s transaction — the one that
        writes those items' rows — so a crash either keeps both or neither."""
        self.raise_if_stopping()
        cap = self.settings.job_error_samples
        row_errors = self.row_errors
        if errors and len(row_errors) < cap:
            row_errors = row_errors + [_error_dict(e) for e in list(errors)[: cap - len(row_errors)]]
        values = dict(
            rows_done=self.rows_done + consumed,
            ingestions_completed=self.ingestions_completed + completed,
            ingestions_failed=self.ingestions_failed + failed,
            requests_failed=self.requests_failed + requests_failed,
            row_errors=row_errors,
            ingestions_filtered=self.ingestions_filtered + filtered,
            runtime_ms=self.runtime_ms(),
        )
        self._fence(conn, **values)
        now = time.monotonic()
        if now - self._last_progress_event >= self.settings.job_progress_seconds:
            jobs.add_event(conn, self.job.id, "Progress", {
                "rows_processed": values["rows_done"],
                "ingestions_completed": values["ingestions_completed"],
                "ingestions_failed": values["ingestions_failed"],
            })  # fmt: skip
            self._last_progress_event = now
            log.info("job %s (%s): progress, %d rows processed", self.job.id, self.job.kind, values["rows_done"],
                     extra={"job_id": self.job.id, "kind": self.job.kind, "rows_processed": values["rows_done"]})  # fmt: skip
        # Counted when the batch commits; a batch rolled back after this is re-counted on resumption.
        kind = self.job.kind
        if completed:
            metrics.JOB_ROWS.labels(kind, "ingested").inc(completed)
        if failed:
            metrics.JOB_ROWS.labels(kind, "failed").inc(failed)
        if filtered:
            metrics.JOB_ROWS.labels(kind, "filtered").inc(filtered)
        # The in-memory counters follow the transaction once it commits (a rolled-back batch —
        # its write failed — must not be counted in a ``Failed`` event or the next batch's mark).
        if getattr(self._staged, "inside", False):
            self._staged.values = values
        else:  # a connection from elsewhere: the caller answers for its commit
            self._take(values)

    def add_event(self, name: str, attributes: dict | None = None, conn: Connection | None = None) -> None:
        if conn is not None:
            jobs.add_event(conn, self.job.id, name, attributes)
            return
        with self.transaction() as own:
            self._fence(own)
            jobs.add_event(own, self.job.id, name, attributes)

    def heartbeat(self) -> None:
        """Renew the lease now (a background thread also does it every third of the lease)."""
        with self.transaction() as conn:
            self._fence(conn)

    def _finish(self, status: JobStatus, event: str, lead: dict | None = None, extra: dict | None = None) -> None:
        """End the job with ``event``: ``lead`` attributes, then the counters as committed (read
        back from the job row in this transaction: they count exactly the rows that are stored),
        then ``extra``."""
        with self.transaction() as conn:
            self._fence(
                conn, status=status.value, finished_at=timestamps.now_ms(), runtime_ms=self.runtime_ms(),
                lease_owner=None, lease_expires_at=None,
            )  # fmt: skip
            self._reload_counters(conn)
            jobs.add_event(conn, self.job.id, event, {**(lead or {}), **self.completed_attributes(), **(extra or {})})

    def _reload_counters(self, conn: Connection) -> None:
        row = conn.execute(
            select(
                jobs_table.c.rows_done, jobs_table.c.ingestions_completed, jobs_table.c.ingestions_failed,
                jobs_table.c.requests_failed, jobs_table.c.ingestions_filtered, jobs_table.c.row_errors,
            ).where(jobs_table.c.id == self.job.id)
        ).one()  # fmt: skip
        self._take({**row._mapping, "row_errors": list(row.row_errors or [])})

    def completed_attributes(self) -> dict:
        attributes = {
            "ingestions_completed": self.ingestions_completed,
            "ingestions_failed": self.ingestions_failed,
            "requests_failed": self.requests_failed,
            "runtime_ms": self.runtime_ms(),
        }
        if self.job.kind in FILTERING_KINDS:
            attributes["ingestions_filtered"] = self.ingestions_filtered
        if self.row_errors:
            attributes["errors"] = self.row_errors
        return attributes


def claim(db: Database, owner: str, kinds, lease_ms: int) -> Job | None:
    """Atomically take one claimable job (new, or its lease expired) of one of ``kinds``."""
    kinds = list(kinds)
    if not kinds:
        return None
    now = timestamps.now_ms()
    candidate = (
        select(jobs_table.c.id)
        .where(
            jobs_table.c.status == JobStatus.IN_PROGRESS.value,
            jobs_table.c.kind.in_(kinds),
            or_(jobs_table.c.lease_expires_at.is_(None), jobs_table.c.lease_expires_at < now),
            # Accounts in the control API's "instant" or "manual" job mode run their jobs on demand.
            jobs_table.c.account_id.not_in(select(control_job_modes.c.account_id)),
        )
        .order_by(jobs_table.c.started_at, jobs_table.c.id)
        .limit(1)
    )
    if db.is_postgres:
        candidate = candidate.with_for_update(skip_locked=True)
    statement = (
        update(jobs_table)
        .where(jobs_table.c.id == candidate.scalar_subquery())
        .values(lease_owner=owner, lease_expires_at=now + lease_ms, attempts=jobs_table.c.attempts + 1, updated_at=now)
        .returning(*jobs_table.c)
    )
    with db.begin() as conn:
        row = conn.execute(statement).first()
    return Job.from_row(row) if row else None


def _any_job_in_progress(db: Database) -> bool:
    with db.connect() as conn:
        found = conn.execute(select(jobs_table.c.id).where(jobs_table.c.status == JobStatus.IN_PROGRESS.value).limit(1))
        return found.first() is not None


def _release(db: Database, job: Job, owner: str, *, delay_ms: int = 0, refund_attempt: bool = False) -> None:
    values = {"lease_owner": None, "lease_expires_at": timestamps.now_ms() + delay_ms if delay_ms else None}
    if refund_attempt:
        values["attempts"] = jobs_table.c.attempts - 1
    with db.begin() as conn:
        jobs.progress_update(conn, job.id, owner, **values)


def _has_history(db: Database, job_id: str) -> bool:
    """Whether an earlier attempt already started the job (then this one is a `Resumed`)."""
    with db.connect() as conn:
        return conn.execute(select(job_events.c.id).where(job_events.c.job_id == job_id).limit(1)).first() is not None


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's live process
        return False
    return False


def reclaim_dead_local_leases(db: Database, hostname: str | None = None) -> list[str]:
    """Expire the leases that crashed processes of this host still hold (their owner token reads
    ``host:pid:…``), so a restarted server resumes its jobs at once instead of after the lease.

    Taking over a job whose worker is in fact alive would still be safe — its next commit is
    fenced out — so a recycled host name or pid can cost work, never correctness.
    """
    hostname = hostname or socket.gethostname()
    with db.connect() as conn:
        held = conn.execute(
            select(jobs_table.c.id, jobs_table.c.lease_owner).where(
                jobs_table.c.status == JobStatus.IN_PROGRESS.value,
                jobs_table.c.lease_owner.like(f"{hostname}:%"),
            )
        ).all()
    reclaimed = []
    for job_id, owner in held:
        parts = owner.split("/", 1)[0].split(":")
        if len(parts) < 2 or parts[0] != hostname or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid() or not _process_gone(pid):
            continue
        with db.begin() as conn:
            conn.execute(
                update(jobs_table)
                .where(jobs_table.c.id == job_id, jobs_table.c.lease_owner == owner)
                .values(lease_expires_at=timestamps.now_ms() - 1)
            )
        log.info("job %s: its worker process %d is gone; taking it over", job_id, pid)
        reclaimed.append(job_id)
    return reclaimed


def remove_finished_payloads(db: Database, file_store) -> int:
    """Delete stored payloads of finished jobs (normally done at once; this catches a crash in
    between) and forget their keys."""
    with db.connect() as conn:
        rows = conn.execute(
            select(jobs_table.c.id, jobs_table.c.payload_key).where(
                jobs_table.c.status != JobStatus.IN_PROGRESS.value, jobs_table.c.payload_key.is_not(None)
            )
        ).all()
    for row in rows:
        file_store.delete(row.payload_key)
        with db.begin() as conn:
            conn.execute(update(jobs_table).where(jobs_table.c.id == row.id).values(payload_key=None))
    return len(rows)


class Worker:
    """Claims and runs jobs one at a time; ``run_forever`` until ``stopping`` is set."""

    def __init__(self, db: Database, file_store, settings, *, name: str | None = None,
                 stopping: threading.Event | None = None, nudged: threading.Event | None = None):  # fmt: skip
        self.db = db
        self.file_store = file_store
        self.settings = settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.stopping = stopping or threading.Event()
        # Set when this process has just submitted a job (``WorkerPool.nudge``): look now rather
        # than at the next poll. Jobs submitted elsewhere are found by polling.
        self.nudged = nudged or threading.Event()
        self._handlers: dict[str, Registration] | None = None

    @property
    def handlers(self) -> dict[str, Registration]:
        """The job handlers, their modules (exports, imports, analytics) imported on first need:
        a server that never runs a job starts and stays without them."""
        if self._handlers is None:
            self._handlers = load_handlers()
        return self._handlers

    def run_once(self) -> bool:
        """Claim and run one job; False when there was none to claim."""
        if self._handlers is None and not _any_job_in_progress(self.db):
            return False
        owner = f"{self.name[:90]}/{uuid.uuid4().hex[:12]}"
        job = claim(self.db, owner, self.handlers, int(self.settings.job_lease_seconds * 1000))
        if job is None:
            return False
        self.run(job, owner)
        return True

    def run(self, job: Job, owner: str) -> None:
        ctx = JobContext(self.db, self.file_store, self.settings, job, owner, self.stopping)
        registration = self.handlers[job.kind]
        done = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(ctx, done), daemon=True, name=f"lease-{job.id[:8]}")
        renewer.start()
        try:
            self._run(ctx, registration)
        finally:
            done.set()
            renewer.join()

    def _run(self, ctx: JobContext, registration: Registration) -> None:
        job = ctx.job
        fields = {"job_id": job.id, "kind": job.kind, "account_id": job.account_id, "attempt": job.attempts}
        metrics.JOBS_CLAIMED.labels(job.kind).inc()
        try:
            if job.attempts > self.settings.job_max_attempts:
                raise JobFailed(f"gave up after {job.attempts - 1} attempts")
            if not _has_history(self.db, job.id):
                log.info("job %s (%s): claimed by %s", job.id, job.kind, self.name, extra=fields)
                if registration.start_event:
                    ctx.add_event(registration.start_event)
            else:
                log.info("job %s (%s): resumed by %s at row %d, attempt %d", job.id, job.kind, self.name,
                         job.rows_done, job.attempts, extra=fields)  # fmt: skip
                ctx.add_event("Resumed", {"attempt": job.attempts, "rows_processed": job.rows_done})
            extra = registration.handler(ctx) or {}
            ctx._finish(JobStatus.COMPLETED, "Completed", extra=extra)
            metrics.JOBS.labels(job.kind, "completed").inc()
            log.info("job %s (%s): completed, %d rows ingested, %d failed, in %d ms", job.id, job.kind,
                     ctx.ingestions_completed, ctx.ingestions_failed, ctx.runtime_ms(), extra=fields)  # fmt: skip
        except LeaseLost:
            metrics.JOBS.labels(job.kind, "lease_lost").inc()
            log.warning("job %s: lease lost to another worker; abandoning this attempt", job.id, extra=fields)
            return
        except Interrupted:
            self._release_for_shutdown(ctx)
            return
        except JobFailed as exc:
            try:
                ctx._finish(JobStatus.FAILED, "Failed", {"reason": exc.reason})
            except LeaseLost:
                return
            metrics.JOBS.labels(job.kind, "failed").inc()
            log.warning("job %s (%s): failed: %s", job.id, job.kind, exc.reason, extra=fields)
        except Exception as exc:  # noqa: BLE001 - a handler bug or a database outage: retry later
            fault = storage_fault(exc)
            if fault is None:
                log.exception("job %s failed on attempt %d", job.id, job.attempts)
            else:  # an outage, not a bug: one line, and the reason in the job's own history
                log.warning("job %s, attempt %d: %s (%s: %s)", job.id, job.attempts, fault.detail, type(exc).__name__, exc)
            if fault is not None and job.attempts < self.settings.job_max_attempts:
                delay_s = min(60, 2**job.attempts)
                try:  # best effort: a full SQLite database cannot take this event either
                    ctx.add_event("Retrying", {"attempt": job.attempts, "reason": f"{_storage_reason(fault)}; retrying in {delay_s}s"})
                except Exception:  # noqa: BLE001
                    log.warning("job %s: could not record the retry (%s)", job.id, fault.detail)
            if job.attempts >= self.settings.job_max_attempts:
                try:
                    reason = f"internal error after {job.attempts} attempts: {type(exc).__name__}: {exc}"
                    if fault is not None:
                        reason = f"{_storage_reason(fault)} (after {job.attempts} attempts)"
                    ctx._finish(JobStatus.FAILED, "Failed", {"reason": reason[:500]})
                    metrics.JOBS.labels(job.kind, "failed").inc()
                except Exception:  # noqa: BLE001
                    log.exception("job %s: could not record the failure", job.id)
                    return
            else:
                metrics.JOBS.labels(job.kind, "retried").inc()
                try:
                    _release(self.db, job, ctx.owner, delay_ms=min(60_000, 1000 * 2**job.attempts))
                except Exception:  # noqa: BLE001 - the lease will expire on its own
                    log.exception("job %s: could not release the lease", job.id)
                return
        # COMPLETED or FAILED: the payload is no longer needed.
        if job.payload_key:
            self.file_store.delete(job.payload_key)
            with self.db.begin() as conn:
                conn.execute(update(jobs_table).where(jobs_table.c.id == job.id).values(payload_key=None))

    def _release_for_shutdown(self, ctx: JobContext) -> None:
        """This worker is stopping at a batch boundary: hand the job back at once (lease expired
        now, the attempt refunded) so a waiting worker resumes it from its mark."""
        job = ctx.job
        with self.db.begin() as conn:
            released = jobs.release(conn, job.id, ctx.owner, rows_done=ctx.rows_done, reason="worker stopping")
            if released:
                conn.execute(update(jobs_table).where(jobs_table.c.id == job.id).values(attempts=jobs_table.c.attempts - 1))
        metrics.JOBS.labels(job.kind, "released").inc()
        log.info("job %s (%s): released at row %d: worker stopping", job.id, job.kind, ctx.rows_done,
                 extra={"job_id": job.id, "kind": job.kind, "rows_processed": ctx.rows_done})  # fmt: skip

    def _renew(self, ctx: JobContext, done: threading.Event) -> None:
        interval = max(0.05, self.settings.job_lease_seconds / 3)
        while not done.wait(interval):
            try:
                ctx.heartbeat()
            except LeaseLost:
                return
            except Exception:  # noqa: BLE001 - try again next interval
                log.exception("job %s: lease renewal failed", ctx.job.id)

    def run_forever(self) -> None:
        try:
            reclaim_dead_local_leases(self.db)
            remove_finished_payloads(self.db, self.file_store)
        except Exception:  # noqa: BLE001
            log.exception("could not reclaim jobs of dead workers or sweep finished payloads")
        next_sweep = 0.0
        while not self.stopping.is_set():
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + SWEEP_INTERVAL_SECONDS
                self.remove_expired_exports()
                self.keep_up_event_storage()
            try:
                busy = self.run_once()
            except Exception:  # noqa: BLE001 - e.g. the database is briefly unreachable
                log.exception("worker %s: claim failed", self.name)
                busy = False
            if not busy:
                self.nudged.wait(self.settings.job_poll_seconds)  # WorkerPool.stop sets it too
                self.nudged.clear()

    def keep_up_event_storage(self) -> dict | None:
        """Month partitions ahead and the retention period (``opencues.event_partitions``)."""
        from opencues import event_partitions

        try:
            return event_partitions.upkeep(
                self.db, months_ahead=self.settings.event_partition_months_ahead,
                retention_days=self.settings.event_retention_days,
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - e.g. a lock timeout behind a long export: the next sweep tries again
            log.exception("event partition upkeep or retention failed")
            return None

    def remove_expired_exports(self) -> int:
        """Delete export files whose download links have expired (nobody can fetch them any more)."""
        try:
            removed = self.file_store.remove_older_than(EXPORT_FILES, self.settings.export_link_ttl_days * 86_400)
        except Exception:  # noqa: BLE001 - the next sweep tries again
            log.exception("could not sweep expired export files")
            return 0
        if removed:
            log.info("removed %d expired export file(s)", removed)
        return removed


SWEEP_INTERVAL_SECONDS = 3600  # how often each worker looks for expired export files and runs event upkeep
GIL_SWITCH_INTERVAL = 0.001  # seconds (see ``WorkerPool.start``)


class WorkerPool:
    """``count`` worker threads (what ``opencues serve`` runs in each server process)."""

    def __init__(self, db: Database, file_store, settings, count: int, *, name: str | None = None):
        self.stopping = threading.Event()
        self.nudged = threading.Event()
        # host:pid first: lets a restarted process on this host recognise its dead predecessor's leases.
        base = f"{socket.gethostname()}:{os.getpid()}" + (f":{name}" if name else "")
        self.workers = [
            Worker(db, file_store, settings, name=f"{base}:w{i}", stopping=self.stopping, nudged=self.nudged)
            for i in range(count)
        ]
        self.threads: list[threading.Thread] = []

    def start(self) -> "WorkerPool":
        # Process-wide: a thread that wants the GIL gets it within 1 ms instead of Python's 5 ms.
        # An import's writer thread needs it back after every SQLite call of a batch (about 20)
        # while the parsing thread holds it: at 5 ms a CSV import ran 112k rows/s, at 1 ms 158k
        # (bench/README.md). The server's event loop waits less behind a running job, too.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))
        for worker in self.workers:
            thread = threading.Thread(target=worker.run_forever, name=f"opencues-{worker.name}", daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def nudge(self) -> None:
        """A job was just submitted: idle workers look for it now instead of at their next poll."""
        self.nudged.set()

    def stop(self, timeout: float = 30) -> None:
        """Stop claiming; a running job stops at its next batch and is released for resumption."""
        self.stopping.set()
        self.nudged.set()  # ends the idle waits
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)


def run_pending_jobs(db: Database, file_store, settings, *, timeout: float = 60) -> int:
    """Run every claimable job in this thread, then wait until no job is held by another worker
    (e.g. the app's own worker thread). Returns the number of jobs this call ran."""
    worker = Worker(db, file_store, settings, name=f"inline:{os.getpid()}:{threading.get_ident()}")
    ran = 0
    deadline = time.monotonic() + timeout
    while True:
        while worker.run_once():
            ran += 1
        with db.connect() as conn:
            busy = conn.execute(
                select(jobs_table.c.id).where(
                    jobs_table.c.status == JobStatus.IN_PROGRESS.value,
                    jobs_table.c.kind.in_(list(worker.handlers)),
                    and_(jobs_table.c.lease_owner.is_not(None), jobs_table.c.lease_expires_at >= timestamps.now_ms()),
                ).limit(1)
            ).first()
        if busy is None:
            return ran
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {busy.id} still running after {timeout}s")
        time.sleep(0.02)
