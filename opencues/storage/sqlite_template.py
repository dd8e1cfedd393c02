"""A migrated, empty SQLite database to copy: how ``opencues serve --test`` makes its ephemeral
data dir in milliseconds instead of running every migration (and importing Alembic) each time.

The template is built once by the migrations themselves — so it is the migrated schema, not a
second description of it — and cached as ``<cache dir>/opencues/schema-<fingerprint>.db``, the
fingerprint being a digest of the migration files (``schema_version.migrations_fingerprint``): a
new or edited migration gets a new template. The cache dir is ``$XDG_CACHE_HOME`` or
``~/.cache``; when it cannot be written, the new database is migrated in place as usual.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from opencues.storage.schema_version import migrations_fingerprint

DATABASE_FILE = "opencues.db"  # the SQLite file of a data dir (Settings.resolved_database_url)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "opencues"


def template_path() -> Path:
    return cache_dir() / f"schema-{migrations_fingerprint()}.db"


def build_template(target: Path) -> None:
    """Migrate a new SQLite file and leave it as one self-contained file at ``target``."""
    from opencues.storage.database import Database

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=".building-", suffix=".db")
    os.close(handle)
    os.unlink(partial)  # SQLite creates it
    db = Database(f"sqlite:///{partial}")
    try:
        db.migrate()
        with db.engine.connect() as conn:  # everything into the main file: no -wal beside it
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
    finally:
        db.dispose()
    for leftover in (partial + "-wal", partial + "-shm", partial + ".migrate-lock"):
        Path(leftover).unlink(missing_ok=True)
    os.replace(partial, target)  # atomic: a concurrent starter sees the whole file or none


def create_from_template(data_dir: Path) -> bool:
    """Put a copy of the migrated template at ``data_dir/opencues.db`` (building the template if
    need be). False, leaving ``data_dir`` alone, when the cache cannot be used."""
    target = Path(data_dir) / DATABASE_FILE
    if target.exists():
        return False
    template = template_path()
    try:
        if not template.exists():
            build_template(template)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, target)
    except OSError:
        target.unlink(missing_ok=True)
        return False
    return True
