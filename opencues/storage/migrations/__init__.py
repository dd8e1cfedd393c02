"""Numbered Alembic migrations, applied on start by every command that opens the database.

Concurrent starters (several ``opencues worker`` processes, ``serve --workers``) serialise on a
lock: a PostgreSQL advisory lock, or a file lock beside the SQLite database.
"""

from __future__ import annotations

import fcntl
import functools
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

_HERE = Path(__file__).parent
_ADVISORY_LOCK_ID = 0x0C0E5


def alembic_config(connection=None) -> Config:
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


@functools.cache
def _heads() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def is_current(db) -> bool:
    """Whether the database's schema is at the newest revision — read without taking the
    migration lock or loading every migration script, as every open of a current database
    (every command, every test) would otherwise do."""
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return frozenset(MigrationContext.configure(conn).get_current_heads()) == _heads()


def upgrade(db, revision: str = "head") -> None:
    if revision == "head" and is_current(db):
        return
    with _migration_lock(db):
        with db.engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)


def downgrade(db, revision: str) -> None:
    with _migration_lock(db):
        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), revision)
