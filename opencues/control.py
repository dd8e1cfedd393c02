"""The control API's library: what a test suite needs to drive opencues (``/-/`` and
``opencues control``).

Accounts with known keys, resets, snapshots (``opencues.snapshots``), faults
(``opencues.faults``), the request journal (``opencues.journal``), job modes, running or failing
a job on demand, and the outbox of export emails. All of it lives in the database (the outbox in
the data dir), so it works the same with several server processes and on PostgreSQL.

Job modes, per account: ``auto`` (the default: workers run jobs as they come), ``instant`` (the
request that submits a job runs it before answering 202) and ``manual`` (jobs wait until
``run_job``). Workers never claim jobs of an account in ``instant`` or ``manual`` mode.
"""

from __future__ import annotations

import email
import email.policy
import logging
import os
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import bindparam, delete, or_, select, text, update

from opencues import accounts, ids, jobs, key_cache, snapshots, timestamps
from opencues.errors import ApiError, bad_request, not_found
from opencues.jobs import JobStatus
from opencues.storage import Database
from opencues.storage.schema_version import head_revision
from opencues.storage.schema import accounts as accounts_table
from opencues.storage.schema import api_keys, control_job_modes, control_snapshots
from opencues.storage.schema import jobs as jobs_table

JOB_MODES = ("auto", "instant", "manual")
ACCOUNT_FIELDS = ("id", "name", "key", "secret", "read_only")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KEY = re.compile(r"[A-Za-z0-9._~-]{1,64}")

log = logging.getLogger("opencues")


# -- health ------------------------------------------------------------------------------------


def schema_head() -> str:
    """The revision this code's schema is at (read without loading Alembic)."""
    return head_revision()


def readiness(db: Database) -> str | None:
    """None when the database answers and its schema is current; else why not."""
    try:
        with db.connect() as conn:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:  # noqa: BLE001 - any failure to read is "not ready"
        return f"the database does not answer: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if current != schema_head():
        return f"the database schema is at revision {current!r}, not {schema_head()!r}: run `opencues migrate`"
    return None


# -- accounts ----------------------------------------------------------------------------------


def create_account(db: Database, body: dict | None = None) -> dict:
    """An account with one API key; ``id``, ``name``, ``key`` and ``secret`` may be chosen."""
    body = body or {}
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    for field in body:
        if field not in ACCOUNT_FIELDS:
            raise bad_request(f"`{field}` is not an account field; expected one of {', '.join(ACCOUNT_FIELDS)}")
    for field in ("id", "name", "key", "secret"):
        if body.get(field) is not None and (not isinstance(body[field], str) or not body[field]):
            raise bad_request(f"`{field}` must be a non-empty string")
    account_id, key, secret = body.get("id"), body.get("key"), body.get("secret")
    if account_id is not None and (len(account_id) > 64 or "/" in account_id or "\x00" in account_id):
        raise bad_request("`id` must be at most 64 characters, without `/`")
    if key is not None and not _KEY.fullmatch(key):
        raise bad_request("`key` must be 1–64 letters, digits or `._~-`")
    if secret is not None and (len(secret) > 1024 or "\x00" in secret):
        raise bad_request("`secret` must be at most 1,024 characters")
    read_only = body.get("read_only", False)
    if not isinstance(read_only, bool):
        raise bad_request("`read_only` must be true or false")
    if key is not None:
        with db.connect() as conn:
            if conn.execute(select(api_keys.c.id).where(api_keys.c.id == key)).first():
                raise ApiError(409, f"API key {key!r} already exists")
    if account_id is None:
        account = _create_generated(db, body.get("name"))
    else:
        account = accounts.create_account(db, account_id, body.get("name"))
    created = accounts.create_key(db, account["id"], read_only=read_only, key=key, secret=secret)
    return {"id": account["id"], "name": account["name"], "key": created["key"], "secret": created["secret"]}


def _create_generated(db: Database, name: str | None) -> dict:
    for _ in range(20):
        try:
            return accounts.create_account(db, ids.account_id() + uuid.uuid4().hex[:6], name)
        except ApiError as exc:
            if exc.status != 409:
                raise
    raise ApiError(503, "could not pick a free account id")


def _require_account(conn, account_id: str) -> None:
    if conn.execute(select(accounts_table.c.id).where(accounts_table.c.id == account_id)).first() is None:
        raise not_found(f"account {account_id!r}")


def delete_account(db: Database, account_id: str, file_store=None) -> None:
    """The account, its keys and all its data (with ``file_store``: its files too)."""
    with db.begin() as conn:
        _require_account(conn, account_id)
        payloads = _payload_keys(conn, account_id)
        snapshots.delete_account_data(conn, account_id)
        conn.execute(delete(control_job_modes).where(control_job_modes.c.account_id == account_id))
    key_cache.forget_everywhere()
    _remove_files(file_store, payloads, [account_id])


def reset_account(db: Database, account_id: str, file_store=None) -> None:
    """One account's data gone (with ``file_store``: its files too); the account, its keys and
    its job mode stay."""
    with db.begin() as conn:
        _require_account(conn, account_id)
        payloads = _payload_keys(conn, account_id)
        snapshots.delete_account_data(conn, account_id, keep_account=True)
    _remove_files(file_store, payloads, [account_id])


def reset(db: Database, file_store=None) -> None:
    """Every account with its keys and data gone, and with ``file_store`` their files (faults,
    the journal and snapshots stay)."""
    with db.begin() as conn:
        payloads = _payload_keys(conn, None)
        account_ids = conn.execute(select(accounts_table.c.id)).scalars().all()
        snapshots.delete_everything(conn)
        conn.execute(delete(control_job_modes))
    key_cache.forget_everywhere()
    _remove_files(file_store, payloads, account_ids)


def _payload_keys(conn, account_id: str | None) -> list[str]:
    """The stored payloads (uploads) of the jobs about to be deleted."""
    query = select(jobs_table.c.payload_key).where(jobs_table.c.payload_key.is_not(None))
    if account_id is not None:
        query = query.where(jobs_table.c.account_id == account_id)
    return list(conn.execute(query).scalars())


def _remove_files(file_store, payload_keys: list[str], account_ids) -> None:
    """After the rows are gone (committed): the jobs' uploads and the accounts' export files, which
    nothing refers to any more — a test suite resetting between tests would otherwise fill the
    disk. Best effort: a file left behind is only disk space (exports are swept by age anyway)."""
    if file_store is None:
        return
    from opencues.filestore import EXPORT_FILES

    try:
        for key in payload_keys:
            file_store.delete(key)
        for account_id in account_ids:
            file_store.remove_all(f"{EXPORT_FILES}/{account_id}")
    except Exception:  # noqa: BLE001 - the data is gone either way; the disk is tidied next time
        log.exception("could not remove the files of reset accounts")


# -- snapshots ---------------------------------------------------------------------------------


def _check_name(name) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise bad_request("`name` must be 1–128 letters, digits or `._-`, starting with a letter or digit")
    return name


def create_snapshot(db: Database, name: str, account_id: str | None = None, file_store=None) -> dict:
    """Save all data (or one account's) under ``name``, replacing a snapshot of that name; with
    the payloads of waiting jobs from ``file_store``."""
    _check_name(name)
    if account_id is not None and not isinstance(account_id, str):
        raise bad_request("`account_id` must be a string")
    with db.begin() as conn:  # one transaction: a consistent view of every table
        if account_id is not None:
            _require_account(conn, account_id)
        document = snapshots.dump(conn, account_id, file_store)
    raw = snapshots.encode(document).decode()
    now = timestamps.now_ms()
    with db.begin() as conn:
        conn.execute(delete(control_snapshots).where(control_snapshots.c.name == name))
        conn.execute(control_snapshots.insert().values(name=name, account_id=account_id, created_at=now, document=raw))
    return _snapshot_info(name, account_id, now, raw)


def _snapshot_info(name, account_id, created_at, raw: str) -> dict:
    return {"name": name, "account_id": account_id, "created_at": timestamps.render(created_at), "bytes": len(raw.encode())}


def list_snapshots(db: Database) -> list[dict]:
    with db.connect() as conn:
        rows = conn.execute(select(control_snapshots).order_by(control_snapshots.c.name)).all()
    return [_snapshot_info(r.name, r.account_id, r.created_at, r.document) for r in rows]


def get_snapshot(db: Database, name: str) -> bytes:
    """The snapshot document itself (JSON)."""
    with db.connect() as conn:
        raw = conn.execute(select(control_snapshots.c.document).where(control_snapshots.c.name == name)).scalar()
    if raw is None:
        raise not_found(f"snapshot {name!r}")
    return raw.encode()


def restore_snapshot(db: Database, name: str, file_store=None) -> dict:
    """Back to exactly the saved state: everything (a full snapshot) or the one account's data,
    waiting jobs' payloads written back to ``file_store``."""
    document = snapshots.decode(get_snapshot(db, name))
    with db.begin() as conn:
        loaded = snapshots.load(conn, document, replace_all=document.get("account_id") is None, file_store=file_store)
    key_cache.forget_everywhere()  # keys it replaced (other processes: on the load's notification)
    return {"name": name, **loaded}


def delete_snapshot(db: Database, name: str) -> None:
    with db.begin() as conn:
        if conn.execute(delete(control_snapshots).where(control_snapshots.c.name == name)).rowcount == 0:
            raise not_found(f"snapshot {name!r}")


def seed(db: Database, raw: bytes | str, file_store=None) -> dict:
    """Load a snapshot file: the accounts it holds are replaced by their content in it; other
    accounts are left alone. Waiting jobs' payloads go to ``file_store``."""
    document = snapshots.decode(raw)
    with db.begin() as conn:
        loaded = snapshots.load(conn, document, file_store=file_store)
    key_cache.forget_everywhere()
    return loaded


# -- jobs --------------------------------------------------------------------------------------


def set_job_mode(db: Database, account_id: str, mode) -> dict:
    if mode not in JOB_MODES:
        raise bad_request(f"`mode` must be one of {', '.join(JOB_MODES)}")
    with db.begin() as conn:
        _require_account(conn, account_id)
        conn.execute(delete(control_job_modes).where(control_job_modes.c.account_id == account_id))
        if mode != "auto":
            conn.execute(control_job_modes.insert().values(account_id=account_id, mode=mode))
    return {"account_id": account_id, "mode": mode}


_MODE = select(control_job_modes.c.mode).where(control_job_modes.c.account_id == bindparam("account_id"))


def job_mode(db: Database, account_id: str) -> str:
    """The account's job mode (one read on the request path of a 202)."""
    row = db.direct.fetch_one(_MODE, {"account_id": account_id})
    return row[0] if row else "auto"


def _job_account(db: Database, job_id: str) -> str:
    with db.connect() as conn:
        account_id = conn.execute(select(jobs_table.c.account_id).where(jobs_table.c.id == job_id)).scalar()
    if account_id is None:
        raise not_found(f"job {job_id!r}")
    return account_id


def _claim_job(db: Database, job_id: str, owner: str, lease_ms: int):
    """Take this one job if nobody holds it: it is waiting (a retry's back-off delay included —
    "now" means now), or its worker's lease ran out."""
    now = timestamps.now_ms()
    statement = (
        update(jobs_table)
        .where(
            jobs_table.c.id == job_id,
            jobs_table.c.status == JobStatus.IN_PROGRESS.value,
            or_(jobs_table.c.lease_owner.is_(None), jobs_table.c.lease_expires_at < now),
        )
        .values(lease_owner=owner, lease_expires_at=now + lease_ms, attempts=jobs_table.c.attempts + 1, updated_at=now)
        .returning(*jobs_table.c)
    )
    with db.begin() as conn:
        row = conn.execute(statement).first()
    return jobs.Job.from_row(row) if row else None


def run_job(db: Database, file_store, settings, job_id: str, *, timeout: float = 300) -> dict:
    """Run a waiting job now, in this thread, to its end; a job a worker is running already is
    waited for. Returns the job as the API shows it."""
    from opencues.worker import Worker

    account_id = _job_account(db, job_id)
    deadline = time.monotonic() + timeout
    while True:
        # A failed attempt is released for a retry: claim it again at once, until it ends (a job
        # that keeps failing ends FAILED after OPENCUES_JOB_MAX_ATTEMPTS attempts).
        owner = f"control:{os.getpid()}:{threading.get_ident()}/{uuid.uuid4().hex[:12]}"
        job = _claim_job(db, job_id, owner, int(settings.job_lease_seconds * 1000))
        if job is not None:
            Worker(db, file_store, settings, name=owner).run(job, owner)
        resource = jobs.get_job(db, account_id, job_id)
        if resource["status"] != JobStatus.IN_PROGRESS.value:
            return resource
        if time.monotonic() > deadline:
            raise ApiError(504, f"job {job_id!r} is still running after {timeout:.0f}s")
        if job is None:
            time.sleep(0.02)  # a worker holds it: wait for it to end


def fail_job(db: Database, job_id: str, reason) -> dict:
    """End a job FAILED now, with the spec's ``Failed`` event carrying ``reason``."""
    if not isinstance(reason, str) or not reason:
        raise bad_request("`reason` is required: a non-empty string")
    account_id = _job_account(db, job_id)
    now = timestamps.now_ms()
    with db.begin() as conn:
        job = jobs.load_job(conn, job_id)
        failed = conn.execute(
            update(jobs_table)
            .where(jobs_table.c.id == job_id, jobs_table.c.status == JobStatus.IN_PROGRESS.value)
            .values(status=JobStatus.FAILED.value, finished_at=now, updated_at=now, lease_owner=None, lease_expires_at=None)
        ).rowcount
        if failed == 0:
            raise ApiError(409, f"job {job_id!r} has ended already ({job.status})")
        attributes = {
            "reason": reason,
            "ingestions_completed": job.ingestions_completed,
            "ingestions_failed": job.ingestions_failed,
            "requests_failed": job.requests_failed,
            "runtime_ms": job.runtime_ms,
        }
        jobs.add_event(conn, job_id, "Failed", attributes)
    return jobs.get_job(db, account_id, job_id)


# -- outbox ------------------------------------------------------------------------------------


def outbox_dir(settings) -> Path:
    return Path(settings.data_dir) / "outbox"


_URL = re.compile(r"https?://\S+")


def _message(path: Path):
    with open(path, "rb") as handle:
        return email.message_from_binary_file(handle, policy=email.policy.default)


def _outbox_entry(path: Path) -> dict:
    message = _message(path)
    body = message.get_body(preferencelist=("plain", "html"))
    content = body.get_content() if body is not None else ""
    stamp = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    return {
        "id": path.stem,
        "to": str(message["To"] or ""),
        "subject": str(message["Subject"] or ""),
        "time": timestamps.render(timestamps.datetime_to_ms(stamp)),
        "links": _URL.findall(content),
    }


def list_outbox(settings) -> list[dict]:
    """Export emails written or sent, newest first."""
    directory = outbox_dir(settings)
    if not directory.is_dir():
        return []
    paths = sorted(directory.glob("*.eml"), key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
    return [_outbox_entry(p) for p in paths]


def outbox_message(settings, message_id: str) -> bytes:
    if "/" in message_id or message_id.startswith("."):
        raise not_found(f"message {message_id!r}")
    path = outbox_dir(settings) / f"{message_id}.eml"
    if not path.is_file():
        raise not_found(f"message {message_id!r}")
    return path.read_bytes()


def clear_outbox(settings) -> int:
    directory = outbox_dir(settings)
    removed = 0
    for path in directory.glob("*.eml") if directory.is_dir() else ():
        path.unlink(missing_ok=True)
        removed += 1
    return removed
