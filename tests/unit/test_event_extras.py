"""A tracked event's optional ``group_id`` and ``context`` (spec §1): stored, shown by the history,
exported in both formats and by both export paths. Database tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from opencues import events, export_windows, exports
from tests.conftest import assert_problem

T0 = 1_628_640_000_000  # 2021-08-11T00:00:00.000Z
STAMP = "2021-08-11T00:00:00.000Z"
BASE = {"email": "harriet@example.com", "format": "json", "conditions": [], "start_time": 0}


def track(api, user_id, body):
    response = api.post(f"users/{user_id}/events", json=body)
    assert response.status_code == 200, response.text
    return response


def test_track_keeps_group_id_and_context_and_the_history_shows_them(api):
    track(api, "u1", {"name": "plain", "timestamp": STAMP})
    track(api, "u1", {"name": "grouped", "timestamp": "2021-08-11T00:00:01Z", "group_id": "g1",
                      "context": {"page": {"url": "https://x.test/a"}, "ip": "10.0.0.1"}})  # fmt: skip
    history = api.get("users/u1/events").json()
    assert history[0] == {"user_id": "u1", "timestamp": "2021-08-11T00:00:01.000Z", "name": "grouped", "attributes": {},
                          "group_id": "g1", "context": {"page": {"url": "https://x.test/a"}, "ip": "10.0.0.1"}}  # fmt: skip
    # An event without them has exactly the beta's four fields.
    assert history[1] == {"user_id": "u1", "timestamp": STAMP, "name": "plain", "attributes": {}}


def test_history_csv_has_group_and_context_columns(api):
    track(api, "u1", {"name": "grouped", "timestamp": STAMP, "group_id": "g1", "context": {"locale": "fr"}})
    response = api.get("users/u1/events", headers={"Accept": "text/csv"})
    rows = list(csv.reader(io.StringIO(response.text)))
    record = dict(zip(rows[0], rows[1]))
    assert rows[0][:3] == ["user_id", "timestamp", "name"]
    assert record["group_id"] == "g1" and record["context.locale"] == "fr"


@pytest.mark.parametrize(
    "extras, stored",
    [
        ({"group_id": 42}, {"group_id": "42"}),  # a number is its decimal text
        ({"group_id": ""}, {}),
        ({"group_id": True}, {}),
        ({"group_id": {"id": "g"}}, {}),
        ({"group_id": None, "context": None}, {}),
        ({"context": "not an object"}, {}),
        ({"context": [1, 2]}, {}),
        ({"context": {}}, {"context": {}}),
    ],
)
def test_odd_group_ids_and_contexts_are_never_a_400(api, extras, stored):
    track(api, "u1", {"name": "e", "timestamp": STAMP, **extras})
    (event,) = api.get("users/u1/events").json()
    assert {k: v for k, v in event.items() if k in ("group_id", "context")} == stored


def test_track_still_names_the_bad_field(api):
    response = api.post("users/u1/events", json={"timestamp": STAMP, "group_id": "g"})
    assert_problem(response, 400, "`name`")


def test_library_track_stores_the_extras(db, account):
    events.track(db, account.account_id, "u", {"name": "e", "timestamp": STAMP, "group_id": "g", "context": {"a": 1}})
    assert events.history(db, account.account_id, "u")[0]["context"] == {"a": 1}
    assert orjson.loads(events.history_json(db, account.account_id, "u"))[0]["group_id"] == "g"


# --- exports --------------------------------------------------------------------------------


def insert(db, rows, account_id="acct1"):
    with db.begin() as conn:
        for r in rows:
            events.insert_event(conn, account_id, r.get("user_id", "u1"), r.get("name", "ev"), r["timestamp"],
                                r.get("attributes", {}), group_id=r.get("group_id"), context=r.get("context"))  # fmt: skip


def export(db, body, *, helpers=0) -> bytes:
    request = exports.validate_request({**BASE, **body})
    out = io.BytesIO()
    exports.write_export(db, "acct1", request, out, helpers=helpers)
    return out.getvalue()


@pytest.fixture
def helped(monkeypatch):
    monkeypatch.setattr(export_windows, "PARALLEL_MIN_ROWS", 0)
    monkeypatch.setattr(export_windows, "WINDOW_BYTES", 1)
    monkeypatch.setattr(export_windows, "PG_WINDOW_BYTES", 1)
    monkeypatch.setattr(export_windows, "MIN_WINDOW_ROWS", 2)


MIXED = [
    {"timestamp": T0 + i, "name": f"e{i}", "attributes": {"n": i},
     **({"group_id": f"g,{i}"} if i % 3 == 0 else {}), **({"context": {"page": {"url": f"u\"{i}"}}} if i % 4 == 0 else {})}
    for i in range(40)
]  # fmt: skip


def test_json_export_carries_extras_only_on_events_that_have_them(db, account):
    insert(db, MIXED)
    lines = [orjson.loads(line) for line in export(db, {"format": "json"}).splitlines()]
    assert lines[0] == {"name": "e0", "timestamp": "2021-08-11T00:00:00.000Z", "user_id": "u1", "attributes": {"n": 0},
                        "group_id": "g,0", "context": {"page": {"url": 'u"0'}}}  # fmt: skip
    assert lines[1] == {"name": "e1", "timestamp": "2021-08-11T00:00:00.001Z", "user_id": "u1", "attributes": {"n": 1}}
    assert lines[3]["group_id"] == "g,3" and "context" not in lines[3]
    assert lines[4]["context"] == {"page": {"url": 'u"4'}} and "group_id" not in lines[4]


def test_csv_export_adds_group_and_context_columns_when_its_range_has_them(db, account):
    insert(db, MIXED)
    insert(db, [{"timestamp": T0 + 10_000, "name": "late", "attributes": {"n": 1}}])
    rows = list(csv.reader(io.StringIO(export(db, {"format": "csv"}).decode(), newline="")))
    assert rows[0] == ["name", "timestamp", "user_id", "group_id", "context", "attributes.n"]
    assert rows[1][3] == "g,0" and orjson.loads(rows[1][4]) == {"page": {"url": 'u"0'}}  # JSON text in the cell
    assert rows[2][3:5] == ["", ""]
    # A range without any: the beta's columns.
    later = list(csv.reader(io.StringIO(export(db, {"format": "csv", "start_time": T0 + 5_000}).decode(), newline="")))
    assert later == [["name", "timestamp", "user_id", "attributes.n"], ["late", "2021-08-11T00:00:10.000Z", "u1", "1"]]


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_both_export_paths_render_the_extras_byte_for_byte_alike(db, account, helped, fmt):
    insert(db, MIXED)
    alone = export(db, {"format": fmt})
    assert export(db, {"format": fmt}, helpers=2) == alone
    assert (b"g,3" in alone) and (b"url" in alone)


@pytest.mark.parametrize("column", ["group_id", "context"])
def test_the_csv_columns_probe_is_one_lookup_in_a_partial_index(db, account, column):
    from sqlalchemy import text

    from opencues.storage.schema import events as events_table

    with db.begin() as conn:
        conn.execute(events_table.insert(), [{"account_id": "acct1", "user_id": f"u{i % 50}", "name": "e", "timestamp": i,
                                              "attributes": {}} for i in range(5_000)])  # fmt: skip
        conn.execute(text("ANALYZE"))
    request = exports.validate_request({**BASE, "format": "csv"})
    probe = exports._Sql(db).extras_probe("acct1", request, events_table.c[column])
    compiled = probe.compile(db.engine, compile_kwargs={"literal_binds": True})
    index = f"ix_events_{column.removesuffix('_id')}_time"
    with db.connect() as conn:
        if db.is_sqlite:
            plan = " ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
        else:
            plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {compiled}")))
    assert index in plan, plan
