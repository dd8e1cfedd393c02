"""A full or read-only disk at the web layer: writes answer 507 / 503 Problem Details (a one-line
warning, no traceback), reads go on being served, and it ends by itself when space returns."""

from __future__ import annotations

import errno
import logging
from contextlib import contextmanager

import psycopg
import pytest
import sqlalchemy.exc

from opencues import events, segments
from tests.conftest import assert_problem
from tests.unit.test_errors import _real_sqlite_error

NDJSON = {"Content-Type": "application/ndjson"}
EVENT_LINE = b'{"user_id": "u1", "name": "clicked", "timestamp": 1700000000}\n'


class _FullDiskStore:
    """The app's file store on a disk with no space left (or a read-only one)."""

    def __init__(self, store, code: int):
        self.store, self.code = store, code

    @contextmanager
    def writer(self, key):
        with self.store.writer(key) as handle:
            raise OSError(self.code, "No space left on device" if self.code == errno.ENOSPC else "Read-only file system")
            yield handle

    def __getattr__(self, name):
        return getattr(self.store, name)


def _storage_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "opencues" and "storage" in r.getMessage()]


@pytest.mark.parametrize("code, status", [(errno.ENOSPC, 507), (errno.EROFS, 503)], ids=["full", "read-only"])
def test_an_upload_to_a_full_or_read_only_disk(api, caplog, code, status):
    state = api.client.app.state
    store = state.file_store
    state.file_store = _FullDiskStore(store, code)
    response = api.post("import/events", content=EVENT_LINE, headers=NDJSON)
    body = assert_problem(response, status, "storage")
    assert "nothing was written" in body["detail"]
    if status == 503:
        assert int(response.headers["retry-after"]) > 0
    assert api.get("flows").status_code == 200  # reads go on
    assert api.get("jobs").json() == []  # and no job was accepted
    for _ in range(3):  # the outage goes on: still one line in the log
        assert api.post("import/events", content=EVENT_LINE, headers=NDJSON).status_code == status
    [warning] = _storage_warnings(caplog)
    assert warning.levelno == logging.WARNING and warning.exc_info is None  # an outage, not a bug
    state.file_store = store  # space is back
    assert api.post("import/events", content=EVENT_LINE, headers=NDJSON).status_code == 202


def _database_full_error(backend: str, tmp_path) -> Exception:
    """What the backend raises on a full disk, wrapped as SQLAlchemy raises it."""
    orig = _real_sqlite_error(tmp_path, read_only=False) if backend == "sqlite" else psycopg.errors.DiskFull("could not extend file")
    return sqlalchemy.exc.OperationalError("INSERT …", {}, orig)


def test_a_full_database_is_507_for_writes_and_reads_go_on(api, backend, monkeypatch, tmp_path):
    error = _database_full_error(backend, tmp_path)

    def refuse(*_args, **_kwargs):
        raise error

    async def refuse_async(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(segments, "create_segment", refuse)
    monkeypatch.setattr(events, "write_grouped", refuse_async)  # the track hot path
    assert_problem(api.post("segments", json={"name": "s"}), 507, "full")
    assert_problem(api.post("users/u1/events", json={"name": "e", "timestamp": "2021-07-20T12:34:00.123Z"}), 507, "full")
    assert api.get("segments").status_code == 200
    monkeypatch.undo()
    assert api.post("segments", json={"name": "s"}).status_code == 201
    assert api.post("users/u1/events", json={"name": "e", "timestamp": "2021-07-20T12:34:00.123Z"}).status_code == 200


def test_an_outage_log_holds_back_repeats_and_counts_them(caplog):
    from opencues.web import errors

    clock = [100.0]
    outages = errors.OutageLog(interval=60, clock=lambda: clock[0])
    for _ in range(5):
        outages.warning("storage is full")
    clock[0] += 61
    outages.warning("storage is full")
    lines = [r.getMessage() for r in caplog.records if r.name == "opencues"]
    assert lines == ["storage is full", "storage is full (4 more like it since the last such line)"]
