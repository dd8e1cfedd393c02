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


def declared_objects(object_, name, type_, reflected, compare_to) -> bool:
    """Alembic's ``include_object``: leave the partitions of ``events`` (PostgreSQL,
    ``opencues.event_partitions``) and their indexes out of schema comparisons; the partitioned
    parent holds what ``schema.py`` declares."""
    from opencues.storage.schema import metadata

    table = name if type_ == "table" else getattr(getattr(object_, "table", None), "name", None)
    return table is None or table in metadata.tables or not table.startswith("events_")


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


def upgrade(db, revision: str = "head") -> None:
    # Imported here: a start on a current schema never gets this far (``Database.migrate`` asks
    # the version table first; ``opencues.storage.schema_version``), and Alembic is slow to import.
    from alembic import command

    with _migration_lock(db):
        with db.engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)


def downgrade(db, revision: str) -> None:
    from alembic import command

    with _migration_lock(db):
        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), revision)
