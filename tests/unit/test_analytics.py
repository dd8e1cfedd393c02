"""The analytics spec's validation (every 400 names its field) and the time helpers."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from opencues import analytics
from opencues.errors import ApiError

BASE = {"metrics": ["events"], "start_time": "2026-01-01", "end_time": "2026-01-31"}


def detail(body: dict, **kwargs) -> str:
    with pytest.raises(ApiError) as caught:
        analytics.parse_spec(body, **kwargs)
    assert caught.value.status == 400
    return caught.value.detail


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"start_time": None}, "start_time is required"),
        ({"metrics": None}, "`metrics` or `columns` is required"),
        ({"columns": ["name"]}, "`metrics` and `columns` cannot both be set"),
        ({"metrics": ["foo"]}, 'unknown metric "foo"'),
        ({"metrics": ["conversion"]}, 'unknown metric "conversion"'),
        ({"metrics": ["avg_time"]}, 'unknown metric "avg_time"'),
        ({"metrics": "events"}, "`metrics`"),
        ({"dimensions": ["foo"]}, 'unknown dimension "foo"'),
        ({"metrics": None, "columns": ["bar"]}, 'unknown column "bar"'),
        ({"metrics": None, "columns": ["name"], "dimensions": ["day"]}, "`dimensions` apply to metrics"),
        ({"conditions": [["foo", "==", 1]]}, 'unknown dimension "foo"'),
        ({"conditions": [["name", "~", "x"]]}, "unknown operator"),
        ({"conditions": [["name", "in", "x"]]}, "`in` takes a non-empty array"),
        ({"conditions": [["name", "like", 3]]}, "`like` takes a string pattern"),
        ({"conditions": [["name", "like", "ab\\"]]}, "lone escape"),
        ({"conditions": [["name", "=="]]}, "conditions[0]"),
        ({"conditions": [["day", "==", "2026-01-01"]]}, '"day" cannot be a condition'),
        ({"conditions": "x"}, "conditions"),
        ({"order_by": [["users", "desc"]]}, '"users" is not a selected metric, dimension or column'),
        ({"order_by": [["events", "up"]]}, "direction"),
        ({"rank_n": {"n": 5, "dimension": "name"}}, '`rank_n.dimension` "name" must be one of the query\'s dimensions'),
        ({"dimensions": ["name"], "rank_n": {"n": 5, "dimension": "event"}}, 'the alias "event" is not accepted'),
        ({"dimensions": ["name"], "rank_n": {"n": 0, "dimension": "name"}}, "rank_n.n"),
        ({"dimensions": ["name"], "rank_n": {"n": 2, "direction": "up", "dimension": "name"}}, "rank_n.direction"),
        ({"dimensions": ["day"], "rank_n": {"n": 2, "dimension": "day"}}, "time bucket"),
        ({"timezone": "Mars/Olympus"}, '"Mars/Olympus" is not a known IANA time zone'),
        ({"start_time": "yesterday"}, "start_time"),
        ({"end_time": "2025-12-31"}, "`end_time` must be later than `start_time`"),
        ({"limit": -1}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"offset": True}, "offset"),
        ({"end_time": "2026-05-28"}, "time range of 147 days exceeds the 90-day maximum for this query shape"),
        ({"start_time": "0001-01-01"}, "`start_time` must be between 1900-01-01 and 2200-01-01"),
        ({"end_time": "9999-12-31T23:59:59Z"}, "`end_time` must be between 1900-01-01 and 2200-01-01"),
        ({"metrics": ["nps_computed_score"], "dimensions": ["day"]}, 'metric "nps_computed_score" requires a `flow_id` condition'),
        ({"metrics": ["nps_promoters"], "dimensions": ["day"], "conditions": [["flow_id", "!=", "s"]]}, "requires a `flow_id` condition"),
        ({"metrics": ["nps_computed_score"], "dimensions": ["week"], "conditions": [["flow_id", "==", "s"]]}, '`dimensions` must be ["day"]'),
        ({"metrics": ["nps_computed_score", "nps_scores_submitted"], "dimensions": ["day"], "conditions": [["flow_id", "==", "s"]]},
         "not allowed alongside"),
        ({"metrics": ["events", "nps_promoters"], "dimensions": ["day"], "conditions": [["flow_id", "==", "s"]]}, "cannot be combined"),
    ],
)
def test_bad_specs_are_400_naming_the_field(change, expected):
    body = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    assert expected in detail(body)


def test_a_spec_that_is_not_an_object_is_400():
    assert "JSON object" in detail([])  # type: ignore[arg-type]


def test_exports_have_no_range_cap_and_account_id_is_ignored():
    spec = analytics.parse_spec({**BASE, "end_time": "2027-01-01", "account_id": "other"}, sync=False)
    assert spec.end_ms - spec.start_ms == 365 * 86_400_000


def test_values_are_not_validated():
    spec = analytics.parse_spec({**BASE, "conditions": [["name", "==", "appcues:no_such_event"], ["flow_id", "in", ["a", 1, True]]]})
    assert [c.value for c in spec.conditions] == ["appcues:no_such_event", ("a", 1, True)]


def test_window_dates_are_local_midnight_and_rfc3339_keeps_its_offset():
    spec = analytics.parse_spec({**BASE, "start_time": "2026-07-01", "end_time": "2026-07-02T00:00:00+02:00", "timezone": "America/New_York"})
    assert spec.start_ms == int(datetime(2026, 7, 1, 4, tzinfo=timezone.utc).timestamp() * 1000)
    assert spec.end_ms == int(datetime(2026, 7, 1, 22, tzinfo=timezone.utc).timestamp() * 1000)


def test_end_time_defaults_to_now():
    spec = analytics.parse_spec({"metrics": ["events"], "start_time": "2026-01-01"}, now_ms=1767312000000)
    assert spec.end_ms == 1767312000000


def test_the_spec_survives_the_round_trip_through_job_params():
    body = {"metrics": ["events", "users"], "dimensions": ["day", "name"], "conditions": [["name", "in", ["a", "b"]]],
            "order_by": [["events", "desc"]], "rank_n": {"n": 3, "direction": "bottom", "dimension": "name"},
            "start_time": "2026-01-01", "end_time": "2026-03-01", "timezone": "Europe/Paris", "limit": 10, "offset": 2}  # fmt: skip
    spec = analytics.parse_spec(body, sync=False)
    again = analytics.parse_spec(spec.to_params(), sync=False)
    assert again.to_params() == spec.to_params()
    assert (again.start_ms, again.end_ms, again.rank, again.limit) == (spec.start_ms, spec.end_ms, spec.rank, 10)


def test_offset_changes_find_dst_to_the_millisecond():
    tz = ZoneInfo("America/New_York")
    start = int(datetime(2026, 3, 1, tzinfo=tz).timestamp() * 1000)
    end = int(datetime(2026, 11, 30, tzinfo=tz).timestamp() * 1000)
    changes = analytics.offset_changes(start, end, tz)
    assert changes == [
        (start, -5 * 3_600_000),
        (int(datetime(2026, 3, 8, 7, tzinfo=timezone.utc).timestamp() * 1000), -4 * 3_600_000),
        (int(datetime(2026, 11, 1, 6, tzinfo=timezone.utc).timestamp() * 1000), -5 * 3_600_000),
    ]
    assert analytics.offset_changes(start, end, timezone.utc) == [(start, 0)]


def test_local_days_label_weeks_from_monday_and_months_from_the_first():
    tz = ZoneInfo("Europe/Paris")
    start = int(datetime(2026, 3, 28, tzinfo=tz).timestamp() * 1000)
    end = int(datetime(2026, 4, 2, tzinfo=tz).timestamp() * 1000)
    days = analytics.local_days(start, end, ["day", "week", "month"], tz)
    assert [r[1:] for r in days.rows] == [
        ("2026-03-28", "2026-03-23", "2026-03-01"), ("2026-03-29", "2026-03-23", "2026-03-01"),
        ("2026-03-30", "2026-03-30", "2026-03-01"), ("2026-03-31", "2026-03-30", "2026-03-01"),
        ("2026-04-01", "2026-03-30", "2026-04-01"),
    ]  # fmt: skip
    assert [r[0] for r in days.rows] == [analytics.day_number(date(2026, 3, 28)) + i for i in range(5)]
    assert len(days.offsets) == 2  # CET -> CEST on 03-29


def test_renderer_shows_times_in_the_zone_and_values_as_strings():
    renderer = analytics.Renderer(ZoneInfo("Asia/Kolkata"))
    assert renderer.instant(1767225600000) == "2026-01-01T05:30:00.000+05:30"
    assert analytics.Renderer(timezone.utc).instant(1767225600000) == "2026-01-01T00:00:00.000Z"
    assert [analytics.Renderer.text(v) for v in (None, "a", 3, 2.0, 2.5, True)] == ["", "a", "3", "2", "2.5", "true"]
