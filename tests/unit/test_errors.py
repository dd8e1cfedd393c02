"""``storage_fault``: a full or read-only disk, as each store reports it, is a 507 or a 503."""

from __future__ import annotations

import errno
import sqlite3

import psycopg
import pytest
import sqlalchemy.exc

from opencues.errors import storage_fault


def _real_sqlite_error(tmp_path, read_only: bool) -> sqlite3.Error:
    """The error SQLite itself raises on a full database (max_page_count reached) or a
    read-only one, not a hand-made look-alike."""
    path = tmp_path / "scratch.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        statements = ["INSERT INTO t VALUES (1)"]
    else:
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA max_page_count = 3")
        statements = ["INSERT INTO t VALUES (randomblob(4000))"] * 10
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("SQLite accepted the write")


def _wrapped(orig: Exception) -> Exception:
    """As SQLAlchemy raises it."""
    return sqlalchemy.exc.OperationalError("INSERT …", {}, orig)


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        _wrapped(psycopg.errors.DiskFull("could not extend file: No space left on device")),
    ],
    ids=["ENOSPC", "EDQUOT", "postgres-53100"],
)
def test_a_full_disk_is_507(exc):
    fault = storage_fault(exc)
    assert fault is not None and fault.status == 507 and "full" in fault.detail


def test_sqlite_full_is_507(tmp_path):
    error = _real_sqlite_error(tmp_path, read_only=False)
    assert "full" in str(error)
    assert storage_fault(_wrapped(error)).status == 507


def test_a_read_only_disk_or_database_is_503_with_retry_after(tmp_path):
    for exc in (
        OSError(errno.EROFS, "Read-only file system"),
        _wrapped(_real_sqlite_error(tmp_path, read_only=True)),
        _wrapped(psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction")),
    ):
        fault = storage_fault(exc)
        assert fault is not None and fault.status == 503 and "read-only" in fault.detail, exc
        assert fault.headers["Retry-After"]


def test_a_fault_raised_while_handling_another_is_found():
    try:
        try:
            raise KeyError("x")
        except KeyError:
            raise OSError(errno.ENOSPC, "No space left on device")  # noqa: B904 - a __context__ chain
    except OSError as exc:
        wrapper = RuntimeError("while writing")
        wrapper.__cause__ = exc
        assert storage_fault(wrapper).status == 507


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad"), OSError(errno.EACCES, "Permission denied"), _wrapped(psycopg.errors.UniqueViolation("dup"))],
    ids=["ValueError", "EACCES", "unique-violation"],
)
def test_other_errors_are_not_storage_faults(exc):
    assert storage_fault(exc) is None
