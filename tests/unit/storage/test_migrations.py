"""Migrations build exactly ``schema.metadata``, go down and up again, and form one linear chain."""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from opencues import attribute_keys
from opencues.storage import Database
from opencues.storage.migrations import alembic_config, downgrade, upgrade
from opencues.storage.schema import events, metadata
from tests.conftest import _driver_url

VERSIONS = Path(__file__).parents[3] / "opencues" / "storage" / "migrations" / "versions"


@pytest.fixture
def empty_db(backend, request, tmp_path):
    """A Database over a brand-new, empty database of the current backend (never migrated)."""
    if backend == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
        yield database
        database.dispose()
        return
    server = request.getfixturevalue("postgres_url").rsplit("/", 1)[0]
    name = f"opencues_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(_driver_url(server + "/postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    database = Database(_driver_url(f"{server}/{name}"))
    yield database
    database.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _diffs(db: Database) -> list:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        return compare_metadata(context, metadata)


def _tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_builds_exactly_the_declared_schema(empty_db):
    assert _tables(empty_db) == set()
    upgrade(empty_db)
    assert _tables(empty_db) == set(metadata.tables)
    assert _diffs(empty_db) == []


def test_downgrade_to_base_and_up_again(empty_db):
    upgrade(empty_db)
    downgrade(empty_db, "base")
    assert _tables(empty_db) == set()
    upgrade(empty_db)
    assert _diffs(empty_db) == []


def test_each_step_goes_down_and_up(empty_db):
    """Every migration's downgrade undoes it: step down one at a time, then back to head."""
    revisions = [script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()]
    upgrade(empty_db)
    for _ in revisions:
        downgrade(empty_db, "-1")
    assert _tables(empty_db) == set()
    for revision in reversed(revisions):
        upgrade(empty_db, revision)
    assert _diffs(empty_db) == []


def test_0002_backfills_the_attribute_key_catalogue_from_the_events(empty_db):
    upgrade(empty_db, "0001")
    with empty_db.begin() as conn:  # events written before the catalogue existed
        conn.execute(events.insert(), [
            {"account_id": "a1", "user_id": "u", "name": "e", "timestamp": i, "attributes": attributes}
            for i, attributes in enumerate([{"plan": "pro", "o": {"n": 1}}, {"plan": 2, "o": "flat"}, {}])
        ] + [{"account_id": "a2", "user_id": "u", "name": "e", "timestamp": 1, "attributes": {"a.b": [1]}}])  # fmt: skip
    upgrade(empty_db)
    with empty_db.connect() as conn:
        assert attribute_keys.read(conn, "a1") == {("plan",): {"string", "number"}, ("o",): {"object", "string"},
                                                    ("o", "n"): {"number"}}  # fmt: skip
        assert attribute_keys.read(conn, "a2") == {("a.b",): {"array"}}


def test_upgrade_is_idempotent_and_safe_to_race(empty_db):
    # `serve --workers N` and several `opencues worker` processes all migrate on start.
    errors = []

    def migrate():
        try:
            empty_db.migrate()
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    empty_db.migrate()
    assert _diffs(empty_db) == []


def test_revision_chain_is_linear_and_numbered():
    files = sorted(p for p in VERSIONS.glob("*.py") if not p.name.startswith("__"))
    assert files, "no migrations found"
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, f"several heads: {script.get_heads()}"
    previous = None
    for index, path in enumerate(files, start=1):
        match = re.fullmatch(r"(\d{4})_[a-z0-9_]+\.py", path.name)
        assert match, f"{path.name}: expected NNNN_what.py"
        number = match[1]
        assert int(number) == index, f"{path.name}: migrations must be numbered 0001, 0002, … without gaps"
        revision = script.get_revision(number)
        assert revision is not None and Path(revision.path).name == path.name, f"{path.name}: revision id must be {number!r}"
        assert revision.down_revision == previous, f"{path.name}: must revise {previous!r}"
        previous = number
    assert script.get_current_head() == previous
