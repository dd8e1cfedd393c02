"""Storage: one narrow ``Database`` object over SQLite (embedded default) or PostgreSQL."""

from opencues.storage.database import Database, open_database

__all__ = ["Database", "open_database"]
