"""Numbered Alembic migrations, applied on start by every command that opens the database.

Concurrent starters (several ``opencues worker`` processes, ``serve --workers``) serialise on a
lock: a PostgreSQL advisory lock, or a file lock beside the SQLite database.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

_HERE = Path(__file__).parent
_ADVISORY_LOCK_ID = 0x0C0E5


def alembic_config(connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def _migration_lock(db):
    if db.is_postgres:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _ADVISORY_LOCK_ID})
                conn.commit()
    elif db.url.startswith("sqlite:///") and ":memory:" not in db.url:
        lock_path = Path(db.url.split("///", 1)[1] + ".migrate-lock")
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        yield


def head_revision() -> str:
    """The newest migration's id: migrations are numbered files whose id is their number, in one
    line (``tests/unit/storage/test_migrations.py`` holds them to it)."""
    return max(p.name[:4] for p in (_HERE / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def is_current(db) -> bool:
    """The database is at the newest migration: one plain query, so that a start on a current
    schema never imports Alembic (a fifth of the server's start-up time)."""
    try:
        with db.engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except Exception:  # noqa: BLE001 - no version table yet (an empty database): not current
        return False
    return versions == [head_revision()]


def upgrade(db, revision: str = "head") -> None:
    if revision == "head" and is_current(db):
        return
    from alembic import command

    with _migration_lock(db):
        with db.engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)


def downgrade(db, revision: str) -> None:
    from alembic import command

    with _migration_lock(db):
        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), revision)
