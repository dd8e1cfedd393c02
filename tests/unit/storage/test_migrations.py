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
from sqlalchemy import create_engine, inspect, select, text

from opencues import attribute_keys
from opencues.storage import Database
from opencues.storage.migrations import alembic_config, declared_objects, downgrade, upgrade
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
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False,
                                                     "include_object": declared_objects})
        return compare_metadata(context, metadata)


def _tables(db: Database) -> set[str]:
    """The tables, without the partitions of ``events`` (PostgreSQL, migration 0008)."""
    names = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
    return {n for n in names if not re.fullmatch(r"events_(p\d{6}|default)", n)}


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


PARTITIONING = "0008"  # the migration that partitions events on PostgreSQL


def test_a_populated_database_migrates_to_partitioned_events_in_place(empty_db):
    """Rows, ids, counts and the id sequence survive partitioning (and its downgrade)."""
    before = ScriptDirectory.from_config(alembic_config()).get_revision(PARTITIONING).down_revision
    upgrade(empty_db, before)
    day = 86_400_000
    instants = [-62_135_596_800_000, -1, 0, 1_764_633_600_000, 1_764_633_600_000 + 40 * day, 253_402_300_799_999]
    with empty_db.begin() as conn:
        conn.execute(events.insert(), [
            {"account_id": f"a{i % 2}", "user_id": f"u{i % 3}", "name": "e", "timestamp": instants[i % len(instants)],
             "attributes": {"i": i}, "group_id": "g" if i % 5 == 0 else None}
            for i in range(60)
        ])  # fmt: skip
        conn.execute(events.delete().where(events.c.id.in_([7, 60])))  # ids with gaps, the highest gone

    def contents():
        with empty_db.connect() as conn:
            return conn.execute(
                select(events.c.id, events.c.account_id, events.c.user_id, events.c.timestamp, events.c.attributes,
                       events.c.group_id).order_by(events.c.id)
            ).all()  # fmt: skip

    rows = contents()
    assert len(rows) == 58
    upgrade(empty_db)
    assert contents() == rows
    assert _diffs(empty_db) == []
    with empty_db.begin() as conn:
        if empty_db.is_postgres:
            assert conn.execute(text("SELECT relkind FROM pg_class WHERE relname = 'events'")).scalar() == "p"
            homes = dict(conn.execute(text('SELECT "timestamp", tableoid::regclass::text FROM events')).all())
            assert homes[0] == "events_p197001" and homes[253_402_300_799_999] == "events_p999912"
            assert homes[-1] == "events_p196912" and homes[-62_135_596_800_000] == "events_p000101"
        new_id = conn.execute(events.insert().values(account_id="a0", user_id="u0", name="e", timestamp=5, attributes={})
                              .returning(events.c.id)).scalar_one()  # fmt: skip
    assert new_id == (61 if empty_db.is_postgres else 60)  # PostgreSQL's sequence carries on past the highest id ever given
    downgrade(empty_db, before)
    assert [r.id for r in contents()] == [r.id for r in rows] + [new_id]
    with empty_db.connect() as conn:
        if empty_db.is_postgres:
            assert conn.execute(text("SELECT relkind FROM pg_class WHERE relname = 'events'")).scalar() == "r"
