"""The schema head read without Alembic, the fast path of ``migrate``, and the migrated SQLite
template ``serve --test`` copies its ephemeral database from."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import text

from opencues.storage import Database, schema_version, sqlite_template


def _schema(path) -> list:
    db = Database(f"sqlite:///{path}")
    with db.connect() as conn:
        rows = conn.execute(text("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")).all()
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    db.dispose()
    return [tuple(r) for r in rows] + [("alembic_version", version)]


def test_head_revision_agrees_with_alembic():
    from alembic.script import ScriptDirectory

    from opencues.storage.migrations import alembic_config

    assert schema_version.head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_revisions_read_from_their_lines_equal_the_parsed_file(tmp_path):
    """The start reads ``revision``/``down_revision`` from their lines; a value spread over lines
    sends it to a parse of the whole file."""
    for path in schema_version.VERSIONS_DIR.glob("*.py"):
        assert schema_version._assignments(path) == schema_version._parsed_assignments(path), path.name
    annotated = tmp_path / "a.py"
    annotated.write_text('"""x\n\nRevision ID: 9\n"""\nrevision: str = "9"  # the id\ndown_revision: str | None = None\n')
    assert schema_version._assignments(annotated) == {"revision": "9", "down_revision": None}
    merge = tmp_path / "b.py"
    merge.write_text('revision = "9"\ndown_revision = (\n    "7",\n    "8",\n)\n')
    assert schema_version._assignments(merge) == {"revision": "9", "down_revision": ("7", "8")}


def test_a_database_from_the_template_equals_a_migrated_one(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert sqlite_template.create_from_template(tmp_path / "data")
    assert sqlite_template.template_path().parent == tmp_path / "cache" / "opencues"
    migrated = Database(f"sqlite:///{tmp_path / 'migrated' / 'opencues.db'}")
    migrated.migrate()
    migrated.dispose()
    assert _schema(tmp_path / "data" / "opencues.db") == _schema(tmp_path / "migrated" / "opencues.db")
    assert list((tmp_path / "cache" / "opencues").iterdir()) == [sqlite_template.template_path()]  # one file, no -wal

    # The second data dir is a copy of the cached file; an existing database is never replaced.
    assert sqlite_template.create_from_template(tmp_path / "second")
    assert not sqlite_template.create_from_template(tmp_path / "second")


def test_a_current_database_is_not_migrated_again(tmp_path, monkeypatch):
    from opencues.storage import migrations

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    sqlite_template.create_from_template(tmp_path / "data")
    db = Database(f"sqlite:///{tmp_path / 'data' / 'opencues.db'}")
    def upgrade(_db):
        raise RuntimeError("upgraded")

    monkeypatch.setattr(migrations, "upgrade", upgrade)
    db.migrate()
    assert db.schema_revision() == schema_version.head_revision()
    db.dispose()
    fresh = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert fresh.schema_revision() is None
    with pytest.raises(RuntimeError, match="upgraded"):  # behind: upgraded
        fresh.migrate()
    fresh.dispose()


def test_a_changed_migration_gets_a_new_template(tmp_path, monkeypatch):
    copy = tmp_path / "versions"
    shutil.copytree(schema_version.VERSIONS_DIR, copy)
    before = schema_version.migrations_fingerprint()
    monkeypatch.setattr(schema_version, "VERSIONS_DIR", copy)
    schema_version.migrations_fingerprint.cache_clear()
    try:
        assert schema_version.migrations_fingerprint() == before
        first = sorted(copy.glob("*.py"))[0]
        first.write_text(first.read_text() + "\n# edited\n")
        schema_version.migrations_fingerprint.cache_clear()
        assert schema_version.migrations_fingerprint() != before
    finally:
        schema_version.migrations_fingerprint.cache_clear()


def test_an_unusable_cache_leaves_the_data_dir_to_be_migrated(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert not sqlite_template.create_from_template(tmp_path / "data")
    assert not (tmp_path / "data" / "opencues.db").exists()
