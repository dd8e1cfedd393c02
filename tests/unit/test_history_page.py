"""A history page's JSON is the same bytes however it is built — by PostgreSQL (``events._history_page``)
or in Python as text (``events.json_page``: SQLite's, and PostgreSQL's for instants it leaves out) —
and the same as the API's event objects (``events.history``) dumped by orjson: key order, escapes,
documents as stored, ``group_id``/``context`` only when set, and every instant in every offset as
``timestamps.render`` writes it, the instants it writes otherwise included."""

import itertools
import random
import uuid

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opencues import events, timestamps

# Text PostgreSQL can store (no NUL; jsonb also refuses ``\u0000``) and Python can encode (no lone surrogates).
storable_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)
documents = st.dictionaries(
    storable_text,
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | storable_text,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(storable_text, inner, max_size=3),
        max_leaves=6,
    ),
    max_size=4,
)
DAY_MS = 86_400_000
instants = st.one_of(
    st.integers(timestamps.MIN_MS, timestamps.MAX_MS),
    st.integers(timestamps.MIN_MS - DAY_MS, timestamps.MIN_MS + DAY_MS),  # the edges, where an offset leaves the range
    st.integers(timestamps.MAX_MS - DAY_MS, timestamps.MAX_MS + DAY_MS),
    st.integers(-(2**62), 2**62),  # stored by other tools
)
stored_events = st.lists(
    st.tuples(storable_text.filter(bool), instants, documents, st.none() | storable_text.filter(bool), st.none() | documents),
    max_size=12,
)
offsets = st.integers(timestamps.MIN_OFFSET_MINUTES, timestamps.MAX_OFFSET_MINUTES)


def store(db, account_id: str, user_id: str, rows) -> None:
    """Rows in their order, one statement for each run of rows sharing a group id and context."""
    with db.begin() as conn:
        for (group_id, context), run in itertools.groupby(rows, key=lambda row: (row[3], row[4])):
            shared = {name: value for name, value in (("group_id", group_id), ("context", context)) if value is not None}
            events.insert_events(conn, account_id, [(user_id, name, instant, attributes) for name, instant, attributes, *_ in run], **shared)


def assert_same_page(db, account_id: str, user_id: str, limit: int, offset: int) -> bytes:
    page = events.history_json(db, account_id, user_id, limit, offset)
    objects = events.history(db, account_id, user_id, limit, offset)
    if db.is_postgres:  # jsonb writes its documents its own way: Python's page of the same rows
        assert orjson.loads(page) == objects
        expected = events.json_page([row[1:] for row in events.history_rows(db, account_id, user_id, limit)], user_id, offset)
    else:  # the documents are stored as orjson wrote them
        expected = orjson.dumps(objects)
    if page != expected:  # where they part, briefly (pytest's diff of two pages of megabytes takes minutes)
        at = next((i for i, (a, b) in enumerate(zip(page, expected)) if a != b), min(len(page), len(expected)))
        pytest.fail(f"the pages part at byte {at}: {page[at - 40 : at + 60]!r} != {expected[at - 40 : at + 60]!r}")
    return page


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=stored_events, offset=offsets, limit=st.integers(1, 15), user_id=storable_text.filter(bool))
@example(rows=[("a", 0, {}, None, None)] * 3, offset=0, limit=2, user_id="u")  # equal instants: latest stored first
@example(rows=[("x", timestamps.MIN_MS, {}, "g", {"k": 1}), ("y", timestamps.MAX_MS, {"é": "\u2028"}, None, None)], offset=840, limit=5, user_id="ü")
def test_the_page_is_the_same_bytes_however_built(db, account, rows, offset, limit, user_id):
    user_id = f"{user_id}-{uuid.uuid4().hex[:6]}"
    store(db, account.account_id, user_id, rows)
    assert_same_page(db, account.account_id, user_id, limit, offset)


def test_every_code_point_is_escaped_alike(db, account):
    code_points = "".join(chr(c) for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF)
    # Names are indexed (an index row holds ~2,700 bytes): they take 500 code points each from
    # the first 22,000 (every escaped and multi-byte kind); group ids, which no index holds, and
    # the documents take 50,000 each, every code point in all.
    chunks = [code_points[i : i + 50_000] for i in range(0, len(code_points), 50_000)]
    store(db, account.account_id, "u", [(code_points[500 * i : 500 * (i + 1)], 1_600_000_000_000 + i, {chunk[:50]: chunk},
                                         chunk, {"c": chunk[::-1]}) for i, chunk in enumerate(chunks)])  # fmt: skip
    assert len(orjson.loads(assert_same_page(db, account.account_id, "u", 100, 0))) == len(chunks)


def test_a_page_of_many_events_in_any_offset(db, account):
    store(db, account.account_id, "u", [("e", 1_600_000_000_000 + (i // 3) * 61_001, {"i": i}, "g" if i % 7 == 0 else None,
                                         {"n": i % 4} if i % 5 == 0 else None) for i in range(1_000)])  # fmt: skip
    for offset in (0, 330, -720, 840):
        assert len(orjson.loads(assert_same_page(db, account.account_id, "u", 1_000, offset))) == 1_000
        assert assert_same_page(db, account.account_id, "nobody", 10, offset) == b"[]"


@pytest.mark.parametrize("offset", [0, -240, 330, 14 * 60, -14 * 60])
def test_json_page_writes_every_instant_as_render_does(offset):
    rng = random.Random(5)
    instants = [rng.randrange(timestamps.MIN_MS, timestamps.MAX_MS) for _ in range(2000)]
    instants += [timestamps.MIN_MS, timestamps.MAX_MS, 0, -1, 1_600_000_000_000 + 86_399_999, -(2**62), 2**62]
    rows = [(instant, f"e{i % 7}", '{"i":%d}' % i, "g" if i % 5 == 0 else None, None) for i, instant in enumerate(instants)]
    page = orjson.loads(events.json_page(rows, "u", offset))
    assert [event["timestamp"] for event in page] == [timestamps.render(instant, offset) for instant in instants]
    assert page == [events.event_as_dict(("u", *row), offset) for row in rows]
