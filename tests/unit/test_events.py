from urllib.parse import quote

import orjson
import pytest
from sqlalchemy import text

from opencues import events, timestamps
from opencues.errors import ApiError
from opencues.storage import Database
from opencues.storage.schema import events as events_table
from tests.conftest import AccountClient, assert_problem, make_account
from tests.nesting import nested, nested_json


def events_path(user_id: str) -> str:
    return f"users/{quote(user_id, safe='')}/events"


def track(api, user_id="abc123", **body):
    body.setdefault("name", "Clicked button")
    body.setdefault("timestamp", "2021-07-20T12:34:00.123Z")
    return api.post(events_path(user_id), json=body)


# --- tracking -------------------------------------------------------------------------------


def test_track_answers_ok_and_the_event_is_in_the_history(api):
    response = track(api, attributes={"button": "Go Home", "color": "red"})
    assert response.status_code == 200
    assert response.json() == {"status": 200, "title": "OK"}
    history = api.get(events_path("abc123")).json()
    assert history == [
        {
            "user_id": "abc123",
            "timestamp": "2021-07-20T12:34:00.123Z",
            "name": "Clicked button",
            "attributes": {"button": "Go Home", "color": "red"},
        }
    ]
    assert list(history[0]) == ["user_id", "timestamp", "name", "attributes"]


def test_track_answers_csv_on_request(api):
    response = api.post(
        events_path("u1"),
        json={"name": "Verified email", "timestamp": "2021-08-10T09:41:53-04:00"},
        headers={"Accept": "text/csv"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text == "status,title\r\n200,OK\r\n"


def test_track_is_committed_before_the_answer(api, settings):
    assert track(api, "durable").status_code == 200
    other = Database(settings.resolved_database_url)  # a separate connection pool sees the row
    try:
        with other.connect() as conn:
            count = conn.execute(
                text("SELECT count(*) FROM events WHERE account_id = :a AND user_id = :u"),
                {"a": api.creds.account_id, "u": "durable"},
            ).scalar()
    finally:
        other.dispose()
    assert count == 1


@pytest.mark.parametrize(
    "sent, stored",
    [
        ("2021-08-10T09:41:53-04:00", "2021-08-10T13:41:53.000Z"),
        ("2021-08-10T09:41:53.5+05:30", "2021-08-10T04:11:53.500Z"),
        ("2021-08-10T09:41:53.123456Z", "2021-08-10T09:41:53.123Z"),
        ("2021-08-10T09:41:53", "2021-08-10T09:41:53.000Z"),  # no offset: UTC
        ("2021-08-10T09:41:53.987654321+00:00", "2021-08-10T09:41:53.987Z"),
        ("2021-08-10", "2021-08-10T00:00:00.000Z"),
    ],
)
def test_track_accepts_iso_8601_with_any_offset_and_fraction(api, sent, stored):
    assert track(api, "tz", timestamp=sent).status_code == 200
    assert api.get(events_path("tz")).json()[0]["timestamp"] == stored


def test_track_ignores_extra_top_level_fields_and_defaults_attributes(api):
    response = api.post(
        events_path("u1"),
        json={
            "name": "Signed up",
            "timestamp": "2021-01-01T00:00:00Z",
            "user_id": "someone-else",
            "group_id": "g1",
            "context": {"ip": "127.0.0.1"},
            "attributes": None,
        },
    )
    assert response.status_code == 200
    [event] = api.get(events_path("u1")).json()
    assert event["user_id"] == "u1"  # the URL's user, not the body's
    assert event["attributes"] == {}
    assert api.get(events_path("someone-else")).json() == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({"timestamp": "2021-01-01T00:00:00Z"}, "name"),
        ({"name": "", "timestamp": "2021-01-01T00:00:00Z"}, "name"),
        ({"name": "   ", "timestamp": "2021-01-01T00:00:00Z"}, "name"),
        ({"name": 42, "timestamp": "2021-01-01T00:00:00Z"}, "name"),
        ({"name": "x"}, "timestamp"),
        ({"name": "x", "timestamp": None}, "timestamp"),
        ({"name": "x", "timestamp": ""}, "timestamp"),
        ({"name": "x", "timestamp": "yesterday"}, "timestamp"),
        ({"name": "x", "timestamp": "2021-13-01T00:00:00Z"}, "timestamp"),
        ({"name": "x", "timestamp": 1628602913000}, "timestamp"),
        ({"name": "x", "timestamp": True}, "timestamp"),
        ({"name": "x", "timestamp": "2021-01-01T00:00:00Z", "attributes": ["a"]}, "attributes"),
        ({"name": "x", "timestamp": "2021-01-01T00:00:00Z", "attributes": "a=1"}, "attributes"),
    ],
)
def test_track_rejects_invalid_fields_naming_them(api, body, field):
    assert_problem(api.post(events_path("u1"), json=body), 400, f"`{field}`")
    assert api.get(events_path("u1")).json() == []


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", b'"x"'])
def test_track_rejects_a_body_that_is_not_a_json_object(api, content):
    response = api.post(events_path("u1"), content=content, headers={"Content-Type": "application/json"})
    assert_problem(response, 400)


def test_track_accepts_only_json(api):
    response = api.post(
        events_path("u1"),
        content=b"name=x&timestamp=2021-01-01",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(response, 415, "application/json")


def test_track_needs_a_writable_key_of_the_account(client, db, account, other_account):
    reader = AccountClient(client, make_account(db, account.account_id, read_only=True))
    assert_problem(track(reader), 403, "read-only")
    response = client.post(f"/v2/accounts/{account.account_id}/users/u/events", json={}, auth=other_account.auth)
    assert_problem(response, 403)
    assert_problem(client.post("/v2/accounts/acct1/users/u/events", json={}), 401)


# --- user ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("user_id", ["a/b", "a/b/events", "harriet@example.com", "with space", "ü-ñ", "100%", "?#&"])
def test_arbitrary_user_ids_round_trip(api, user_id):
    assert track(api, user_id).status_code == 200
    history = api.get(events_path(user_id)).json()
    assert [e["user_id"] for e in history] == [user_id]


def test_a_user_id_up_to_the_limit_is_stored_on_every_backend_and_a_longer_one_is_a_400(api):
    import random
    import string

    from opencues.ids import MAX_USER_ID_BYTES

    longest = "".join(random.choices(string.ascii_letters, k=MAX_USER_ID_BYTES - 2)) + "é"  # é: 2 bytes
    assert track(api, longest).status_code == 200
    assert [e["user_id"] for e in api.get(events_path(longest)).json()] == [longest]
    assert_problem(track(api, longest + "x"), 400, "`user_id`")
    assert_problem(api.get(events_path(longest + "x")), 400, "1024 bytes")


def test_users_histories_are_separate(api, client, db, other_account):
    track(api, "a", name="one")
    track(api, "a/b", name="two")
    AccountClient(client, other_account).post(
        events_path("a"), json={"name": "theirs", "timestamp": "2021-01-01T00:00:00Z"}
    )
    assert [e["name"] for e in api.get(events_path("a")).json()] == ["one"]
    assert [e["name"] for e in api.get(events_path("a/b")).json()] == ["two"]


def test_a_user_never_seen_has_an_empty_history(api):
    assert api.get(events_path("nobody")).json() == []
    response = api.get(events_path("nobody"), headers={"Accept": "text/csv"})
    assert response.text == "user_id,timestamp,name\r\n"


# --- history --------------------------------------------------------------------------------


def test_history_is_most_recent_first_and_latest_stored_first_on_ties(api):
    track(api, "u", name="old", timestamp="2021-01-01T00:00:00Z")
    track(api, "u", name="tie-1", timestamp="2021-06-01T00:00:00Z")
    track(api, "u", name="new", timestamp="2022-01-01T00:00:00Z")
    track(api, "u", name="tie-2", timestamp="2021-06-01T00:00:00Z")
    assert [e["name"] for e in api.get(events_path("u")).json()] == ["new", "tie-2", "tie-1", "old"]


def test_history_limit(api, db):
    with db.begin() as conn:
        for i in range(12):
            events.insert_event(conn, api.creds.account_id, "u", f"e{i}", 1_600_000_000_000 + i)
    assert [e["name"] for e in api.get(events_path("u"), params={"limit": 3}).json()] == ["e11", "e10", "e9"]
    assert len(api.get(events_path("u"), params={"limit": "10000"}).json()) == 12


def test_history_default_limit_is_a_setting(settings, db, account):
    from opencues.web.app import create_app
    from tests.in_process_client import InProcessClient

    small = settings.model_copy(update={"history_default_limit": 2})
    with db.begin() as conn:
        for i in range(5):
            events.insert_event(conn, account.account_id, "u", f"e{i}", 1_600_000_000_000 + i)
    with InProcessClient(create_app(small, db)) as client:
        body = AccountClient(client, account).get(events_path("u")).json()
    assert [e["name"] for e in body] == ["e4", "e3"]


@pytest.mark.parametrize("limit", ["0", "-1", "10001", "abc", "1.5", "", "99999999999999999999"])
def test_history_rejects_a_bad_limit(api, limit):
    assert_problem(api.get(events_path("u"), params={"limit": limit}), 400, "`limit`")


@pytest.mark.parametrize(
    "time_zone, rendered",
    [
        ("-04:00", "2021-07-20T08:34:00.123-04:00"),
        ("-240", "2021-07-20T08:34:00.123-04:00"),
        ("+05:30", "2021-07-20T18:04:00.123+05:30"),
        ("0", "2021-07-20T12:34:00.123Z"),
    ],
)
def test_history_time_zone_renders_every_timestamp(api, time_zone, rendered):
    track(api, "u")
    track(api, "u", timestamp="2021-07-20T12:34:00.123-01:00")
    body = api.get(events_path("u"), params={"time_zone": time_zone}).json()
    assert body[1]["timestamp"] == rendered
    assert body[0]["timestamp"] == timestamps.render(timestamps.parse_iso("2021-07-20T13:34:00.123Z", field="t"),
                                                      timestamps.parse_offset(time_zone))  # fmt: skip


@pytest.mark.parametrize("time_zone", ["EDT", "-25:00", "+4:61", "", "600000"])
def test_history_rejects_a_bad_time_zone(api, time_zone):
    assert_problem(api.get(events_path("u"), params={"time_zone": time_zone}), 400, "`time_zone`")


def test_history_csv_flattens_attributes_into_sorted_dotted_columns(api):
    track(api, "abc123", name="Clicked button", timestamp="2021-07-20T12:34:00.123Z",
          attributes={"color": "red", "button": "Go Home"})  # fmt: skip
    track(api, "abc123", name="appcues:page_view", timestamp="2021-07-20T12:34:56.789Z",
          attributes={"url": "https://example.com/index.cfm", "page": {"title": "Home, sweet", "n": 2}})  # fmt: skip
    response = api.get(events_path("abc123"), headers={"Accept": "text/csv"})
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.split("\r\n") == [
        "user_id,timestamp,name,attributes.button,attributes.color,attributes.page.n,attributes.page.title,attributes.url",
        'abc123,2021-07-20T12:34:56.789Z,appcues:page_view,,,2,"Home, sweet",https://example.com/index.cfm',
        "abc123,2021-07-20T12:34:00.123Z,Clicked button,Go Home,red,,,",
        "",
    ]


def test_history_needs_a_key_of_the_account(client, db, account, other_account):
    reader = AccountClient(client, make_account(db, account.account_id, read_only=True))
    assert reader.get(events_path("u")).status_code == 200
    response = client.get(f"/v2/accounts/{account.account_id}/users/u/events", auth=other_account.auth)
    assert_problem(response, 403)


# --- library --------------------------------------------------------------------------------


def test_event_as_dict_renders_in_an_offset(db, account):
    with db.begin() as conn:
        events.insert_event(conn, account.account_id, "u", "x", 1_628_602_913_000, {"k": [1, 2]})
    with db.connect() as conn:
        row = conn.execute(events.history_statement(account.account_id, "u", 1)).one()
    assert events.event_as_dict(row, -240) == {
        "user_id": "u",
        "timestamp": "2021-08-10T09:41:53.000-04:00",
        "name": "x",
        "attributes": {"k": [1, 2]},
    }


def test_history_is_an_index_range_scan(db, account):
    with db.begin() as conn:
        conn.execute(
            events_table.insert(),
            [
                {"account_id": account.account_id, "user_id": f"user{i % 200}", "name": "e",
                 "timestamp": 1_600_000_000_000 + i, "attributes": {}}  # fmt: skip
                for i in range(20_000)
            ],
        )
        conn.execute(text("ANALYZE"))
    statement = events.history_statement(account.account_id, "user7", 100)
    compiled = statement.compile(db.engine, compile_kwargs={"literal_binds": True})
    with db.connect() as conn:
        if db.is_sqlite:
            plan = " ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
            assert "USING INDEX ix_events_user_time" in plan, plan
            assert "TEMP B-TREE" not in plan, plan  # no sort: the index delivers the order
        else:
            plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {compiled}")))
            if db.events_partitioned:  # the rows' partition (here the default one) through its copy of the index
                assert "Index Scan Backward using events_default_ix_events_user_time on events_default" in plan, plan
                assert "Seq Scan on events_default" not in plan, plan
            else:
                assert "Index Scan Backward using ix_events_user_time" in plan, plan
                assert "Seq Scan" not in plan and "\n  ->  Sort" not in plan, plan


def test_history_json_is_the_history_with_attributes_passed_through(db, account):
    with db.begin() as conn:
        events.insert_event(conn, account.account_id, "u", "a", 1_628_602_913_000, {"nested": {"k": [1, "two", None]}})
        events.insert_event(conn, account.account_id, "u", "b", 1_628_602_914_000)
    expected = events.history(db, account.account_id, "u", 10, 330)
    assert orjson.loads(events.history_json(db, account.account_id, "u", 10, 330)) == expected
    assert expected[1]["attributes"] == {"nested": {"k": [1, "two", None]}}


def test_library_track_without_http(db, account):
    events.track(db, account.account_id, "u", {"name": "Signed up", "timestamp": "2021-08-10T09:41:53-04:00"})
    assert events.history(db, account.account_id, "u") == [
        {"user_id": "u", "timestamp": "2021-08-10T13:41:53.000Z", "name": "Signed up", "attributes": {}}
    ]
    with pytest.raises(ApiError) as raised:
        events.track(db, account.account_id, "u", {"name": "x", "timestamp": "2021-08-10", "attributes": {"k": "\x00"}})
    assert raised.value.status == 400 and "`attributes.k`" in raised.value.detail


# --- hostile input ----------------------------------------------------------------------------


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999-00:01"])
def test_track_refuses_a_timestamp_outside_the_range(api, stamp):
    assert_problem(track(api, "u", timestamp=stamp), 400, "`timestamp`")
    assert api.get(events_path("u")).status_code == 200


@pytest.mark.parametrize("time_zone", ["+01:00", "+14:00", "-12:00", "0"])
def test_history_renders_the_edges_of_the_range_in_every_time_zone(api, time_zone):
    assert track(api, "u", name="last", timestamp="9999-12-31T23:59:59.999Z").status_code == 200
    assert track(api, "u", name="first", timestamp="0001-01-01T00:00:00Z").status_code == 200
    for accept in ("application/json", "text/csv"):
        response = api.get(events_path("u"), params={"time_zone": time_zone}, headers={"Accept": accept})
        assert response.status_code == 200, response.text
    body = api.get(events_path("u"), params={"time_zone": time_zone}).json()
    assert [timestamps.parse_iso(e["timestamp"], field="t") for e in body] == [timestamps.MAX_MS, timestamps.MIN_MS]


def test_history_reads_every_stored_value(api, db):
    # Rows stored before the range was enforced (or written by other tools): reads stay total.
    with db.begin() as conn:
        for ms in (timestamps.MAX_MS + 43_200_000, timestamps.MIN_MS - 50_400_000, 2**62, -(2**62)):
            events.insert_event(conn, api.creds.account_id, "u", "x", ms)
    for time_zone in ("0", "+14:00", "-12:00"):
        for accept in ("application/json", "text/csv"):
            response = api.get(events_path("u"), params={"time_zone": time_zone}, headers={"Accept": accept})
            assert response.status_code == 200, response.text
    assert api.get(events_path("u")).json()[0]["timestamp"].startswith("+")


@pytest.mark.parametrize("time_zone", ["٣٠", "+٠٥:٣٠", "０"])
def test_history_time_zone_takes_ascii_digits_only(api, time_zone):
    assert_problem(api.get(events_path("u"), params={"time_zone": time_zone}), 400, "`time_zone`")


@pytest.mark.parametrize("depth", [65, 254, 255, 600, 1021])
def test_track_refuses_attributes_nested_too_deep(api, depth):
    from opencues import attributes

    assert attributes.MAX_DEPTH == 64
    body = '{"name": "x", "timestamp": "2021-01-01T00:00:00Z", "attributes": {"deep": %s}}' % nested_json(depth)
    response = api.post(events_path("u"), content=body, headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "`attributes.deep`")
    assert api.get(events_path("u")).json() == []


def test_track_accepts_attributes_nested_up_to_the_limit(api):
    body = '{"name": "x", "timestamp": "2021-01-01T00:00:00Z", "attributes": {"deep": %s}}' % nested_json(64)
    assert api.post(events_path("u"), content=body, headers={"Content-Type": "application/json"}).status_code == 200
    assert api.get(events_path("u")).json()[0]["attributes"] == {"deep": nested(64)}


def test_track_refuses_too_many_attribute_keys_counted_at_every_depth(settings, db, account):
    from opencues.web.app import create_app
    from tests.in_process_client import InProcessClient

    small = settings.model_copy(update={"max_attribute_keys": 10})
    with InProcessClient(create_app(small, db)) as client:
        api = AccountClient(client, account)
        ten = {"a": {f"k{i}": i for i in range(4)}, "b": [{"c": 1, "d": 2}], "e": 1, "f": 2}  # 10 keys
        assert track(api, "u", attributes=ten).status_code == 200
        assert_problem(track(api, "u", attributes={**ten, "g": 3}), 400, "`attributes`")
        assert_problem(track(api, "u", attributes={**ten, "b": [{"c": 1, "d": 2, "x": 3}]}), 400, "more than 10")
    assert len(events.history(db, account.account_id, "u")) == 1


def test_the_attribute_key_cap_is_a_setting_with_a_default():
    from opencues.settings import Settings

    assert Settings().max_attribute_keys == 1000


@pytest.mark.parametrize(
    "attributes, field",
    [
        ({"k": "a\x00b"}, "`attributes.k`"),
        ({"k": {"deeper": ["x", "\x00"]}}, "`attributes.k.deeper[1]`"),
        ({"k\x00": 1}, "`attributes`"),
        ({"k": [{"\x00": 1}]}, "`attributes.k[0]`"),
    ],
)
def test_track_refuses_nul_anywhere_naming_the_field(api, attributes, field):
    assert_problem(track(api, "u", attributes=attributes), 400, field)
    assert_problem(track(api, "u", name="a\x00"), 400, "`name`")
    assert api.get(events_path("u")).json() == []


def test_a_literal_backslash_u0000_is_text_not_nul(api):
    assert track(api, "u", name="\\u0000", attributes={"k": "\\u0000", "\\u0000": 1}).status_code == 200
    [event] = api.get(events_path("u")).json()
    assert event["name"] == "\\u0000" and event["attributes"] == {"k": "\\u0000", "\\u0000": 1}


def test_library_track_applies_the_same_rules(db, account):
    for attributes in ({"deep": nested(300)}, {f"k{i}": i for i in range(1001)}):
        with pytest.raises(ApiError) as raised:
            events.track(db, account.account_id, "u", {"name": "x", "timestamp": "2021-08-10", "attributes": attributes})
        assert raised.value.status == 400 and "`attributes" in raised.value.detail


def test_insert_events_writes_what_one_insert_event_a_row_writes(db):
    """The seeding shortcut (one statement for many rows) leaves the same events, in the same id
    order, with the same attribute catalogue and hourly counts as ``insert_event`` row by row."""
    from opencues.storage.schema import event_attribute_keys, event_name_hours

    seeded = [("u1", "a", 1_600_000_000_000, {"flowId": "f1", "n": 1}), ("u2", "b", 1_600_000_000_000, None),
              ("u1", "a", 1_600_003_600_000, {"deep": {"x": "y"}}), ("u3", "a", 1_600_000_000_001, {"n": "text"})]  # fmt: skip
    with db.begin() as conn:
        for user_id, name, timestamp, attributes in seeded:
            events.insert_event(conn, "one_by_one", user_id, name, timestamp, attributes)
        events.insert_events(conn, "at_once", seeded)
        events.insert_events(conn, "at_once", [])

    def stored(account_id):
        with db.connect() as conn:
            rows = [tuple(r) for r in conn.execute(
                events_table.select().with_only_columns(events_table.c.user_id, events_table.c.name, events_table.c.timestamp,
                                                        events_table.c.attributes, events_table.c.flow_id)
                .where(events_table.c.account_id == account_id).order_by(events_table.c.id))]  # fmt: skip
            keys = sorted(tuple(r) for r in conn.execute(event_attribute_keys.select().with_only_columns(
                event_attribute_keys.c.path, event_attribute_keys.c.type).where(event_attribute_keys.c.account_id == account_id)))  # fmt: skip
            counts = sorted(tuple(r) for r in conn.execute(event_name_hours.select().with_only_columns(
                event_name_hours.c.name, event_name_hours.c.hour, event_name_hours.c.events).where(event_name_hours.c.account_id == account_id)))  # fmt: skip
        return rows, keys, counts

    rows, keys, counts = stored("at_once")
    assert (rows, keys, counts) == stored("one_by_one")
    assert [r[:3] for r in rows] == [s[:3] for s in seeded] and rows[0][4] == "f1"
    assert len(keys) == 5 and sum(c[2] for c in counts) == 4  # deep, deep.x, flowId, n twice (number, string)
