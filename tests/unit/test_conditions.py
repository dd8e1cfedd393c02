"""The conditions language: parsing errors point at the item; compiled conditions select the
same events on SQLite and PostgreSQL (every test runs on both)."""

import pytest
from sqlalchemy import select

from opencues import conditions
from opencues.events import insert_event
from opencues.errors import ApiError
from opencues.storage.schema import events, segment_members

T0 = 1_628_640_000_000  # 2021-08-11T00:00:00Z

EVENTS = [
    ("e1", "u1", "appcues:flow_started", T0, {"flowId": "f1", "flowVersion": 3, "flowType": "journey", "stepId": "s1",
     "stepType": "modal", "stepChildId": "c9", "n": 9, "s": "9", "b": True, "nested": {"k": "v", "deep": {"z": 1}},
     "arr": [1, 2], "empty": "", "obj": {"a": 1}}),
    ("e2", "u2", "appcues:flow_completed", T0 + 1, {"flowId": "f2", "flowVersion": "3", "n": 10, "s": "10", "b": False,
     "nested": {"k": "w"}, "nul": None, "f": 2.5}),
    ("e3", "u3", "Clicked Button", T0 + 2, {"checklistId": "c1", "itemId": "i1", "n": 1, "s": "abc"}),
    ("e4", "u1", "appcues:nps_score", T0 + 3, {"score": 9}),
    ("e5", "u2", "appcues:nps_feedback", T0 + 4, {"feedback": "great"}),
    ("e6", "u3", "appcues:nps_feedback", T0 + 5, {"feedback": ""}),
    ("e7", "u4", "custom", T0 + 6, {"score": 10, "feedback": "not nps", "n": 0}),
    ("e8", "u5", "APPCUES:upper", T0 + 7, {"s": "[1,2]", "x": "50%_off", "obj": '{"a":1}'}),
    ("e9", "u5", "appcues_custom:click", T0 + 8, {"x": "50% off", "s": "Abc"}),
]
ALL = {e[0] for e in EVENTS}


@pytest.fixture
def seeded(db):
    rows = [dict(account_id="acct1", user_id=u, name=n, timestamp=t, attributes={**a, "label": label})
            for label, u, n, t, a in EVENTS]
    # Another account's events and memberships must never leak into acct1's matches.
    rows.append(dict(account_id="acct2", user_id="u2", name="appcues:flow_started", timestamp=T0, attributes={"flowId": "f1", "label": "other"}))
    with db.begin() as conn:
        for row in rows:
            insert_event(conn, **row)
        conn.execute(segment_members.insert(), [
            {"account_id": "acct1", "segment_id": "seg1", "user_id": "u1"},
            {"account_id": "acct1", "segment_id": "seg1", "user_id": "u3"},
            {"account_id": "acct1", "segment_id": "seg2", "user_id": "u5"},
            {"account_id": "acct2", "segment_id": "seg1", "user_id": "u2"},
        ])
    return db


def matches(db, conds) -> set[str]:
    tree = conditions.parse(conds)
    where = conditions.compile_conditions(tree, db.dialect, "acct1")
    with db.connect() as conn:
        rows = conn.execute(select(events.c.attributes).where(events.c.account_id == "acct1", where)).all()
    return {r.attributes["label"] for r in rows}


def check(db, cases):
    for conds, expected in cases:
        got = matches(db, conds)
        assert got == set(expected), f"{conds}: expected {sorted(expected)}, got {sorted(got)}"


def test_empty_conditions_match_everything(seeded):
    assert matches(seeded, []) == ALL


def test_named_fields(seeded):
    check(seeded, [
        ([["name", "==", "custom"]], ["e7"]),
        ([["user_id", "==", "u5"]], ["e8", "e9"]),
        ([["flow_id", "==", "f1"]], ["e1"]),
        ([["flow_version", "==", 3]], ["e1"]),
        ([["flow_version", "==", "3"]], ["e2"]),
        ([["flow_type", "==", "journey"]], ["e1"]),
        ([["step_id", "==", "s1"]], ["e1"]),
        ([["step_type", "==", "modal"]], ["e1"]),
        ([["step_child_id", "==", "c9"]], ["e1"]),
        ([["checklist_id", "==", "c1"]], ["e3"]),
        ([["checklist_item_id", "==", "i1"]], ["e3"]),
        ([["timestamp", "==", T0 + 2]], ["e3"]),
        ([["attributes.nested.k", "==", "w"]], ["e2"]),
        ([["attributes.nested.deep.z", "==", 1]], ["e1"]),
    ])


def test_attribute_paths_walk_objects_not_arrays(seeded):
    # PostgreSQL's path operator read `arr.0` as arr's first element; SQLite reads a key "0".
    check(seeded, [
        ([["attributes.arr.0", "==", 1]], []),
        ([["attributes.arr.0", "is not null"]], []),
        ([["attributes.arr.0", "is null"]], ALL),
        ([["attributes.nested.deep.z", "is not null"]], ["e1"]),
    ])


def test_nps_fields_read_only_nps_events(seeded):
    check(seeded, [
        ([["nps_score", "==", 9]], ["e4"]),
        ([["nps_score", ">=", 9]], ["e4"]),  # e7 has a score but is not an NPS event
        ([["nps_score", "is null"]], ALL - {"e4"}),
        ([["nps_feedback", "is not null"]], ["e5"]),  # the spec's "non-empty NPS feedback"
        ([["nps_feedback", "like", "%"]], ["e5", "e6"]),
    ])


def test_user_segment_id_reads_this_accounts_membership(seeded):
    check(seeded, [
        ([["user_segment_id", "==", "seg1"]], ["e1", "e3", "e4", "e6"]),
        ([["user_segment_id", "!=", "seg1"]], ["e2", "e5", "e7", "e8", "e9"]),
        ([["user_segment_id", "in", ["seg1", "seg2"]]], ["e1", "e3", "e4", "e6", "e8", "e9"]),
        ([["user_segment_id", "not in", ["seg1", "seg2"]]], ["e2", "e5", "e7"]),
        ([["user_segment_id", "==", "nope"]], []),
        ([["user_segment_id", "==", "seg1"], ["name", "like", "appcues%"]], ["e1", "e4", "e6"]),
    ])


def test_equality_is_type_aware(seeded):
    check(seeded, [
        ([["attributes.n", "==", 9]], ["e1"]),
        ([["attributes.n", "==", 9.0]], ["e1"]),
        ([["attributes.s", "==", "9"]], ["e1"]),
        ([["attributes.s", "==", 9]], []),
        ([["attributes.n", "==", "9"]], []),
        ([["attributes.b", "==", True]], ["e1"]),
        ([["attributes.b", "==", False]], ["e2"]),
        ([["attributes.n", "==", True]], []),  # 1 is not true
        ([["attributes.n", "==", 1]], ["e3"]),  # and true is not 1
        ([["attributes.arr", "==", "[1,2]"]], []),  # an array is not its JSON text
        ([["attributes.s", "==", "[1,2]"]], ["e8"]),
        ([["attributes.obj", "==", '{"a":1}']], ["e8"]),
        ([["name", "==", 9]], []),
        ([["attributes.f", "==", 2.5]], ["e2"]),
    ])


def test_not_equal_skips_nulls_and_type_mismatches_are_unequal(seeded):
    check(seeded, [
        ([["attributes.n", "!=", 9]], ["e2", "e3", "e7"]),  # events without `n` are null: no match
        ([["attributes.s", "!=", 9]], ["e1", "e2", "e3", "e8", "e9"]),  # "9" != 9
        ([["attributes.nul", "!=", "x"]], []),  # JSON null is null
        ([["name", "!=", 9]], ALL),
        ([["timestamp", "!=", T0]], ALL - {"e1"}),
    ])


def test_ordering_compares_numbers_with_numbers_and_strings_with_strings(seeded):
    check(seeded, [
        ([["attributes.n", ">", 1]], ["e1", "e2"]),
        ([["attributes.n", ">=", 1]], ["e1", "e2", "e3"]),
        ([["attributes.n", "<", 9]], ["e3", "e7"]),
        ([["attributes.n", "<=", 0]], ["e7"]),
        ([["attributes.b", ">", 0]], []),  # booleans are not numbers
        ([["attributes.s", ">", 0]], []),  # nor are strings
        ([["attributes.s", "<", "A"]], ["e1", "e2"]),  # "10" < "9" < "A" < "Abc" < "[1,2]" < "abc" by code point
        ([["attributes.s", "<", "["]], ["e1", "e2", "e9"]),
        ([["attributes.s", ">", "Z"]], ["e3", "e8"]),
        ([["attributes.n", "<", "z"]], []),
        ([["attributes.f", ">", 2]], ["e2"]),
        ([["name", ">=", "appcues_"]], ["e7", "e9"]),  # "custom" too
        ([["timestamp", ">=", T0 + 7]], ["e8", "e9"]),
        ([["timestamp", "<", "2021-08-11T00:00:00.002Z"]], ["e1", "e2"]),
    ])


def test_like_is_case_sensitive_and_ilike_is_not(seeded):
    check(seeded, [
        ([["name", "like", "appcues:%"]], ["e1", "e2", "e4", "e5", "e6"]),
        ([["name", "ilike", "appcues:%"]], ["e1", "e2", "e4", "e5", "e6", "e8"]),
        ([["name", "like", "appcues_custom:%"]], ["e9"]),
        ([["name", "like", "appcues\\_custom:%"]], ["e9"]),
        ([["name", "like", "appcues_c%"]], ["e9"]),  # `_` is one character
        ([["name", "like", "custo_"]], ["e7"]),
        ([["name", "not like", "appcues%"]], ["e3", "e7", "e8"]),
        ([["name", "not ilike", "appcues%"]], ["e3", "e7"]),
        ([["attributes.x", "like", "50\\%\\_%"]], ["e8"]),  # escaped % and _ are literal
        ([["attributes.x", "like", "50\\%_off"]], ["e8", "e9"]),
        ([["attributes.x", "like", "50%"]], ["e8", "e9"]),
        ([["attributes.x", "like", "50[%"]], []),  # GLOB metacharacters are plain text
        ([["attributes.s", "ilike", "abc"]], ["e3", "e9"]),
        ([["attributes.s", "like", "abc"]], ["e3"]),
        ([["attributes.n", "like", "9"]], []),  # like applies to strings only
        ([["attributes.n", "not like", "9"]], ["e1", "e2", "e3", "e7"]),  # present and not a matching string
    ])


def test_in_and_not_in(seeded):
    check(seeded, [
        ([["flow_id", "in", ["f1", "f2", "zz"]]], ["e1", "e2"]),
        ([["attributes.n", "in", [9, "10", True]]], ["e1"]),
        ([["attributes.s", "in", ["9", 10]]], ["e1"]),
        ([["attributes.b", "in", [True, False]]], ["e1", "e2"]),
        ([["attributes.n", "not in", [9, 10]]], ["e3", "e7"]),
        ([["name", "in", ["custom", 5]]], ["e7"]),
        ([["name", "not in", ["custom"]]], ALL - {"e7"}),
        ([["timestamp", "in", [T0, "2021-08-11T00:00:00.001Z"]]], ["e1", "e2"]),
    ])


def test_null_operators(seeded):
    check(seeded, [
        ([["flow_id", "is null"]], ALL - {"e1", "e2"}),
        ([["flow_id", "is not null"]], ["e1", "e2"]),
        ([["attributes.nul", "is null"]], ALL),  # JSON null counts as null
        ([["attributes.empty", "is not null"]], []),  # the empty string is not "not null"
        ([["attributes.empty", "is null"]], ALL - {"e1"}),  # ... nor null
        ([["attributes.nested", "is not null"]], ["e1", "e2"]),
        ([["name", "is null"]], []),
        ([["timestamp", "is not null"]], ALL),
    ])


def test_conjunctions_nest(seeded):
    check(seeded, [
        ([["or", ["checklist_id", "==", "c1"], ["flow_id", "==", "f1"]]], ["e1", "e3"]),
        ([["and", ["flow_id", "==", "f1"], ["user_id", "==", "u1"]]], ["e1"]),
        ([["flow_id", "==", "f1"], ["user_id", "==", "u2"]], []),  # implicit and
        ([["not", ["flow_id", "==", "f1"]]], ALL - {"e1"}),  # `not` matches events without flowId
        ([["not", ["attributes.n", ">", 5]]], ALL - {"e1", "e2"}),
        ([["not", ["not", ["flow_id", "==", "f1"]]]], ["e1"]),
        ([["or", ["and", ["name", "like", "appcues:%"], ["not", ["or", ["flow_id", "==", "f1"], ["nps_score", "is not null"]]]],
           ["user_id", "==", "u5"]]], ["e2", "e5", "e6", "e8", "e9"]),
        ([["or", ["flow_id", "==", "f1"]]], ["e1"]),
        ([["and", ["not", ["attributes.nul", "is not null"]]]], ALL),
    ])


@pytest.mark.parametrize(
    "conds, where",
    [
        ({"a": 1}, "conditions:"),
        ("x", "conditions:"),
        ([["flowid", "==", "x"]], 'conditions[0][0]: unknown field "flowid"'),
        ([["flow_id", "==", "x"], ["flowid", "==", "x"]], "conditions[1][0]"),
        ([["flow_id", "=", "x"]], "conditions[0][1]: unknown operator"),
        ([["flow_id", "=="]], "conditions[0]:"),
        ([["flow_id", "==", "x", "y"]], "conditions[0]:"),
        ([["flow_id", "is null", "x"]], "conditions[0]:"),
        ([["flow_id", "==", ["x"]]], "conditions[0][2]"),
        ([["flow_id", "==", {"a": 1}]], "conditions[0][2]"),
        ([["flow_id", "==", None]], "conditions[0][2]"),
        ([["flow_id", "in", []]], "conditions[0][2]"),
        ([["flow_id", "in", "x"]], "conditions[0][2]"),
        ([["flow_id", "in", ["a", ["b"]]]], "conditions[0][2][1]"),
        ([["flow_id", "in", list(range(10_001))]], "conditions[0][2]"),
        ([["flow_id", "like", 5]], "conditions[0][2]"),
        ([["flow_id", "like", "abc\\"]], "conditions[0][2]"),
        ([["flow_id", "<", True]], "conditions[0][2]"),
        ([["timestamp", ">", "yesterday"]], "conditions[0][2]"),
        ([["timestamp", "like", "2021%"]], "conditions[0][2]"),
        ([["attributes.n", "==", 2**70]], "conditions[0][2]"),
        ([["attributes.n", ">", float("inf")]], "conditions[0][2]"),
        ([["attributes.n", "in", [1, float("-inf")]]], "conditions[0][2][1]"),
        ([["timestamp", ">", 1e300]], "conditions[0][2]"),
        ([["timestamp", "<", -(2**63) - 1]], "conditions[0][2]"),
        ([["or", ["name", "==", "a"], ["timestamp", "in", [1, -1e300]]]], "conditions[0][2][2][1]"),
        ([["and", ["not", ["timestamp", "==", float("nan")]]]], "conditions[0][1][1][2]"),
        ([["attributes.n", "==", float("inf")]], "conditions[0][2]"),
        ([["user_segment_id", "like", "x"]], "conditions[0][1]"),
        ([["user_segment_id", "==", 5]], "conditions[0][2]"),
        ([["attributes.", "==", 1]], "conditions[0][0]"),
        ([["attributes.a..b", "==", 1]], "conditions[0][0]"),
        ([['attributes.a"b', "==", 1]], "conditions[0][0]"),
        ([["attributes.a\tb", "==", 1]], "conditions[0][0]"),
        ([["attributes.a.line\nbreak", "is null"]], "conditions[0][0]"),
        ([[]], "conditions[0]:"),
        (["flow_id"], "conditions[0]:"),
        ([[5, "==", 1]], "conditions[0][0]"),
        ([["or"]], "conditions[0]:"),
        ([["not", ["flow_id", "==", "a"], ["flow_id", "==", "b"]]], "conditions[0]:"),
        ([["or", ["flow_id", "==", "a"], ["and", ["flowid", "==", "b"]]]], "conditions[0][2][1][0]"),
        ([["or", ["flow_id", "==", "a"], ["flow_id", "~", "b"]]], "conditions[0][2][1]"),
    ],
)
def test_invalid_conditions_name_the_item(conds, where):
    with pytest.raises(ApiError) as info:
        conditions.parse(conds)
    assert info.value.status == 400
    assert info.value.detail.startswith(where), info.value.detail


def test_depth_and_size_are_bounded():
    deep = ["flow_id", "==", "x"]
    for _ in range(conditions.MAX_DEPTH):
        deep = ["not", deep]
    with pytest.raises(ApiError, match="nest too deeply"):
        conditions.parse([deep])
    wide = [["flow_id", "==", str(i)] for i in range(conditions.MAX_NODES + 1)]
    with pytest.raises(ApiError, match="too many conditions"):
        conditions.parse(wide)
    conditions.parse([["or", *wide[: conditions.MAX_NODES - 1]]])  # at the limit is fine


def test_dates_in_timestamp_values_read_in_the_time_zone():
    tree = conditions.parse([["timestamp", ">=", "2021-08-11"]], tz=conditions.timestamps.offset_tz(-240))
    assert tree.operands[0].value == T0 + 4 * 3_600_000


def test_like_to_glob():
    assert conditions.like_to_glob("a%b_c") == "a*b?c"
    assert conditions.like_to_glob("50\\%[*?]") == "50%[[][*][?]]"
    assert conditions.like_to_glob("a\\\\b") == "a\\b"


def test_values_are_bound_parameters_not_sql_text():
    sneaky = "x' OR '1'='1"
    tree = conditions.parse([["flow_id", "==", sneaky], ["name", "like", sneaky]])
    for dialect_name in ("sqlite", "postgresql"):
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = sqlite.dialect() if dialect_name == "sqlite" else postgresql.dialect()
        compiled = conditions.compile_conditions(tree, dialect_name, "acct1").compile(dialect=dialect)
        assert sneaky not in str(compiled)
        assert sneaky in compiled.params.values()


def test_nested_attribute_keys_with_array_literal_punctuation(db):
    # PostgreSQL's `#>` path is an array literal: written unquoted, `a,b` was two keys there.
    odd = {"a,b": 1, "a": {"b": 2}, "{x}": 3, "sp ace": 4, "NULL": 5}
    with db.begin() as conn:
        insert_event(conn, "acct1", "u1", "ev", T0, {"o": odd, "label": "odd"})
        insert_event(conn, "acct1", "u1", "ev", T0, {"o": {"a": {"b": 1}, "arr": [5]}, "label": "plain"})
    check(db, [
        ([["attributes.o.a,b", "==", 1]], ["odd"]),
        ([["attributes.o.{x}", "==", 3]], ["odd"]),
        ([["attributes.o.sp ace", ">", 3]], ["odd"]),
        ([["attributes.o.NULL", "==", 5]], ["odd"]),
        ([["attributes.o.a.b", "==", 1]], ["plain"]),
        ([["attributes.o.a,b", "is null"]], ["plain"]),
        ([["attributes.o.arr.0", "is not null"]], []),  # a path names keys: it never indexes an array
    ])  # fmt: skip

