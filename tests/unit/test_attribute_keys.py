"""The attribute-key catalogue: walking documents into (path, type) pairs, recording them with the
events that carry them (track, grouped or not; library inserts), reading and rebuilding it.
Database tests run on SQLite and on PostgreSQL; imports and the migration's backfill are tested
beside them (tests/unit/test_imports.py, tests/unit/storage/test_migrations.py)."""

import asyncio

import pytest

from opencues import attribute_keys, events, snapshots
from opencues.storage import Database
from opencues.storage.schema import event_attribute_keys
from opencues.storage.schema import events as events_table

T0 = "2021-08-11T00:00:00Z"


def catalogue(db, account_id="acct1") -> dict:
    with db.connect() as conn:
        return attribute_keys.read(conn, account_id)


def catalogue_inserts(db, monkeypatch) -> list:
    """Records each catalogue statement the direct path executes (one entry per executemany)."""
    executed = []
    prepare = db.direct.prepare

    def spying(statement):
        if getattr(statement, "table", None) is event_attribute_keys:
            executed.append(statement)
        return prepare(statement)

    monkeypatch.setattr(db.direct, "prepare", spying)
    return executed


# --- walking ---------------------------------------------------------------------------------


def test_walker_records_leaves_objects_and_nested_paths():
    document = {"s": "x", "n": 1, "f": 2.5, "b": False, "z": None, "a": [1, {"k": 1}], "o": {"p": {"q": "deep"}, "e": {}}}
    assert attribute_keys.pairs_of(document) == {
        (("s",), "string"), (("n",), "number"), (("f",), "number"), (("b",), "boolean"), (("z",), "null"),
        (("a",), "array"), (("o",), "object"), (("o", "p"), "object"), (("o", "p", "q"), "string"), (("o", "e"), "object"),
    }  # fmt: skip


def test_walker_keeps_dotted_keys_apart_from_nesting():
    pairs = attribute_keys.pairs_of({"a.b": 1, "a": {"b": "x"}})
    assert pairs == {(("a.b",), "number"), (("a",), "object"), (("a", "b"), "string")}
    assert attribute_keys.encode_path(("a.b",)) != attribute_keys.encode_path(("a", "b"))


def test_walker_reports_only_documents_that_bring_new_pairs():
    walker = attribute_keys.KeyWalker()
    assert walker.add({"k": 1, "o": {"x": "a"}})
    assert not walker.add({"k": 2, "o": {"x": "b"}})  # same shape
    assert not walker.add({"o": {"x": "c"}, "k": 3})  # other key order, same pairs
    assert walker.add({"k": 4, "o": {"x": 5}})  # a new type, one level down
    assert walker.pairs == {(("k",), "number"), (("o",), "object"), (("o", "x"), "string"), (("o", "x"), "number")}


# --- the catalogue ---------------------------------------------------------------------------


def test_record_is_idempotent_and_per_account(db):
    with db.begin() as conn:
        attribute_keys.record(conn, "acct1", {(("a",), "string"), (("a.b",), "number")})
        attribute_keys.record(conn, "acct1", {(("a",), "string"), (("a",), "object")})
        attribute_keys.record(conn, "acct2", {(("other",), "null")})
        attribute_keys.record(conn, "acct2", set())
    assert catalogue(db) == {("a",): {"string", "object"}, ("a.b",): {"number"}}
    assert catalogue(db, "acct2") == {("other",): {"null"}}
    assert catalogue(db, "acct3") == {}


def test_a_key_longer_than_an_index_entry_is_recorded(db):
    """PostgreSQL refuses B-tree entries over ~2.7 kB: the catalogue keys on the path's digest."""
    import random
    import string

    long_key = "".join(random.choices(string.ascii_letters, k=9_000))  # incompressible
    events.track(db, "acct1", "u1", {"name": "e", "timestamp": T0, "attributes": {long_key: {"x": 1}}})
    assert catalogue(db) == {(long_key,): {"object"}, (long_key, "x"): {"number"}}


def test_library_inserts_record_keys_in_their_transaction(db):
    with pytest.raises(RuntimeError):
        with db.begin() as conn:
            events.insert_event(conn, "acct1", "u", "e", 1, {"gone": 1})
            raise RuntimeError("roll back")
    with db.begin() as conn:
        events.insert_event(conn, "acct1", "u", "e", 1, {"k": {"x": True}})
    assert catalogue(db) == {("k",): {"object"}, ("k", "x"): {"boolean"}}


def test_rebuild_makes_the_catalogue_exactly_the_events_pairs(db):
    with db.begin() as conn:
        conn.execute(events_table.insert(), [
            {"account_id": "acct1", "user_id": "u", "name": "e", "timestamp": 1, "attributes": {"a": 1, "o": {"x": "s"}}},
            {"account_id": "acct1", "user_id": "u", "name": "e", "timestamp": 2, "attributes": {"a": "text"}},
            {"account_id": "acct2", "user_id": "u", "name": "e", "timestamp": 1, "attributes": {"b": None}},
        ])  # fmt: skip
        attribute_keys.record(conn, "acct1", {(("stale",), "string")})
        attribute_keys.record(conn, "acct2", {(("stale",), "string")})
        attribute_keys.rebuild(conn, "acct1")
    assert catalogue(db) == {("a",): {"number", "string"}, ("o",): {"object"}, ("o", "x"): {"string"}}
    assert catalogue(db, "acct2") == {("stale",): {"string"}}  # another account: untouched
    with db.begin() as conn:
        attribute_keys.rebuild(conn)
    assert catalogue(db, "acct2") == {("b",): {"null"}}


# --- track: the group commit's companion -----------------------------------------------------


def test_track_records_keys_with_one_statement_a_group(db, monkeypatch):
    executed = catalogue_inserts(db, monkeypatch)
    events.track(db, "acct1", "u", {"name": "e", "timestamp": T0, "attributes": {"plan": "pro", "o": {"n": 1}}})
    assert catalogue(db) == {("plan",): {"string"}, ("o",): {"object"}, ("o", "n"): {"number"}}
    assert len(executed) == 1

    async def burst(attributes):
        payload = {"name": "e", "timestamp": T0, "attributes": attributes}
        await asyncio.gather(*(events.track_grouped(db, "acct1", f"u{i}", payload) for i in range(20)))

    asyncio.run(burst({"plan": 3}))
    assert catalogue(db)[("plan",)] == {"string", "number"}
    assert 2 <= len(executed) <= 3  # one statement per group (the first row may go alone), not per row


def test_pairs_are_written_again_after_the_catalogue_lost_them_elsewhere(db, settings):
    """An account reset by another process (or this one) takes its catalogue with it: the next
    events must bring their pairs back, though this process wrote the same pairs before."""
    payload = {"name": "e", "timestamp": T0, "attributes": {"plan": "pro"}}
    events.track(db, "acct1", "u", payload)
    elsewhere = Database(settings.resolved_database_url)
    try:
        with elsewhere.begin() as conn:
            snapshots.delete_account_data(conn, "acct1", keep_account=True)
    finally:
        elsewhere.dispose()
    assert catalogue(db) == {}
    asyncio.run(events.track_grouped(db, "acct1", "u", payload))
    assert catalogue(db) == {("plan",): {"string"}}


def test_a_rolled_back_write_leaves_no_pair_remembered(db):
    bad = {**events.event_row("acct1", "u", {"name": "e", "timestamp": T0, "attributes": {"k": "v"}}), "name": None}
    with pytest.raises(Exception):
        db.direct.write(events._insert(db), [bad])  # NOT NULL: the whole transaction rolls back
    assert catalogue(db) == {}
    events.track(db, "acct1", "u", {"name": "e", "timestamp": T0, "attributes": {"k": "w"}})
    assert catalogue(db) == {("k",): {"string"}}


def test_a_bad_row_in_a_group_keeps_the_good_rows_keys(db):
    good = events.event_row("acct1", "u", {"name": "e", "timestamp": T0, "attributes": {"good": 1}})
    bad = {**events.event_row("acct1", "u", {"name": "e", "timestamp": T0, "attributes": {"bad": 1}}), "name": None}

    async def burst():
        insert = events._insert(db)
        return await asyncio.gather(*(db.direct.write_grouped(insert, r) for r in (good, bad)), return_exceptions=True)

    results = asyncio.run(burst())
    assert results[0] is None and isinstance(results[1], Exception)
    assert catalogue(db) == {("good",): {"number"}}
