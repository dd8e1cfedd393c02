"""Properties of exports: random events, exported as JSON and CSV from SQLite and PostgreSQL at
once, give the same rows and values on both databases — the values that were stored.

The databases render the rows themselves, so spellings may differ (PostgreSQL writes JSONB with
spaces and numbers in plain decimal: ``1e+16`` on SQLite is ``10000000000000000`` there); the
values may not. Numbers are therefore compared as decimals.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opencues import csv_writer, exports
from opencues.events import insert_event
from opencues.storage import Database
from tests.conftest import _driver_url, create_postgres_database

T0 = 1_628_640_000_000

# Keys as clients send them: dots, quotes, backslashes, non-ASCII, spaces (NUL is refused at every entry: tests/unit/test_attributes.py).
keys = st.sampled_from(["a", "b", "0", "1", "plan", "b.c", "é", " sp", "$", "[0]", "x-y"])
# Keys SQLite's JSON paths cannot spell (a quote, a backslash, a control character).
hard_keys = st.sampled_from(['q"k', "back\\slash", "line\nbreak", 'both"\\', "a"])
texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8)
numbers = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.1, -0.0, 1e16, 1e300, 5e-324, 2**53 + 1, 100.0]),
)
values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=6,
)
event_rows = st.lists(
    st.tuples(st.sampled_from(["u1", "u2", "ü/3"]), st.sampled_from(["Clicked", "appcues:nps_score"]),
              st.integers(0, 5), st.dictionaries(keys, values, max_size=4)),
    min_size=1, max_size=8,
)  # fmt: skip

_accounts = itertools.count()


@pytest.fixture(scope="module")
def databases(tmp_path_factory):
    stores = {}
    sqlite = Database(f"sqlite:///{tmp_path_factory.mktemp('exports') / 'opencues.db'}")
    sqlite.migrate()
    stores["sqlite"] = sqlite
    drop = None
    try:
        url, drop = create_postgres_database("opencues_props")
    except pytest.skip.Exception:
        pass  # create_postgres_database failed the test instead when PostgreSQL is required
    else:
        stores["postgresql"] = Database(_driver_url(url))
        stores["postgresql"].migrate()
    yield stores
    for db in stores.values():
        db.dispose()
    if drop is not None:
        drop()


def _decimal(value):
    """A JSON value with every number as a Decimal (so 1e300 equals 1000…0, -0.0 equals 0)."""
    return json.loads(json.dumps(value), parse_float=Decimal, parse_int=Decimal) if value is not None else None


def _same_cell(cell: str, expected: str) -> bool:
    if cell == expected:
        return True
    try:
        if json.loads(cell, parse_float=Decimal, parse_int=Decimal) == json.loads(expected, parse_float=Decimal, parse_int=Decimal):
            return True
        # A double written with more digits than it needs is still the same double.
        return json.loads(cell, parse_int=Decimal) == json.loads(expected, parse_int=Decimal)
    except ValueError:
        return False


def _export(db, account_id: str, fmt: str) -> bytes:
    request = exports.validate_request({"email": "p@example.com", "format": fmt, "conditions": [], "start_time": 0})
    out = io.BytesIO()
    exports.write_export(db, account_id, request, out)
    return out.getvalue()


EXPORT_EXAMPLES = settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@EXPORT_EXAMPLES
@given(event_rows)
@example([("u1", "Clicked", 0, {"a": 2**63 - 1, "b": -(2**63), "b.c": {"b": 1}})])
@example([("u1", "Clicked", 0, {"a": {"0": 1}}), ("u2", "Clicked", 1, {"a": [5, 6]})])
@example([("u1", "Clicked", 0, {"a": [1, 2.0, "x"], "b": -0.0, "plan": 1e300})])
def test_both_databases_export_the_stored_values(databases, rows):
    account_id = f"exp{next(_accounts)}"
    for db in databases.values():
        with db.begin() as conn:
            for user_id, name, offset, attributes in rows:
                insert_event(conn, account_id, user_id, name, T0 + offset, attributes)
    # Stored order: by time, then as inserted.
    stored = sorted(enumerate(rows), key=lambda item: (item[1][2], item[0]))
    expected_json = [
        {"name": name, "user_id": user_id, "attributes": _decimal(attributes)} for _i, (user_id, name, _o, attributes) in stored
    ]
    flat = [csv_writer.flatten(attributes) for _i, (_u, _n, _o, attributes) in stored]

    headers = {}
    for dialect, db in databases.items():
        lines = _export(db, account_id, "json").decode().split("\n")[:-1]  # (not splitlines: U+2028 is text)
        got = [json.loads(line, parse_float=Decimal, parse_int=Decimal) for line in lines]
        assert [{k: r[k] for k in ("name", "user_id", "attributes")} for r in got] == expected_json, dialect

        table = list(csv.reader(io.StringIO(_export(db, account_id, "csv").decode(), newline="")))
        header, body = table[0], table[1:]
        headers[dialect] = header
        assert header[:3] == ["name", "timestamp", "user_id"]
        assert len(body) == len(rows), dialect
        for record, cells in zip(flat, body):
            for column, cell in zip(header[3:], cells[3:]):
                expected = csv_writer.cell(record.get(column.removeprefix("attributes.")))
                assert _same_cell(cell, expected), (dialect, column, cell, expected)
    assert len(set(map(tuple, headers.values()))) == 1, headers


@settings(EXPORT_EXAMPLES, max_examples=15)
@given(st.lists(st.tuples(st.just("u1"), st.just("Clicked"), st.integers(0, 3),
                          st.dictionaries(hard_keys, values | st.dictionaries(hard_keys, values, max_size=2),
                                          min_size=1, max_size=2)), min_size=1, max_size=3))
@example([("u1", "Clicked", 0, {'q"k': {"back\\slash": 1, "a": "x"}, "a": {'q"k': [1]}})])
@example([("u1", "Clicked", 0, {'q"k': "not an object"}), ("u1", "Clicked", 1, {'q"k': {"a": True}})])
def test_keys_with_quotes_and_backslashes_export_too(databases, rows):
    test_both_databases_export_the_stored_values.hypothesis.inner_test(databases, rows)
