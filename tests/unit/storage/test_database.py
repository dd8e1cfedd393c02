"""SQLite connection setup: the pragmas that durability and memory depend on."""

from opencues.settings import load_settings
from opencues.storage.database import open_database


def _pragma(db, name):
    with db.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_sqlite_connections_are_durable_wal_with_the_configured_cache(tmp_path):
    db = open_database(load_settings(data_dir=tmp_path, sqlite_cache_mb=7))
    try:
        assert _pragma(db, "journal_mode") == "wal"
        assert _pragma(db, "synchronous") == 1  # NORMAL: a commit survives kill -9 of the process
        assert _pragma(db, "cache_size") == -7 * 1024  # negative: KiB
    finally:
        db.dispose()


def test_the_default_cache_is_32_mib(tmp_path):
    db = open_database(load_settings(data_dir=tmp_path))
    try:
        assert _pragma(db, "cache_size") == -32 * 1024
    finally:
        db.dispose()


def test_temporary_data_goes_to_files_not_memory(tmp_path):
    db = open_database(load_settings(data_dir=tmp_path))
    try:
        assert _pragma(db, "temp_store") == 1  # FILE
    finally:
        db.dispose()
