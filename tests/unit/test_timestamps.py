import random
from datetime import datetime, timedelta, timezone

import pytest

from opencues import timestamps
from opencues.errors import ApiError


def reference_render(ms: int, offset: int) -> str:
    """The obvious datetime-based rendering, to check the table-driven one against."""
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms + offset * 60_000)
    text = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}"
    if offset == 0:
        return text + "Z"
    sign = "+" if offset > 0 else "-"
    return text + f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"


def test_render_matches_reference_over_random_instants_and_offsets():
    rng = random.Random(5)
    for _ in range(20_000):
        ms = rng.randrange(-61_000_000_000_000, 250_000_000_000_000)  # years 0037 to 9892
        offset = rng.choice([0, -240, 330, -720, 840, 45, -1])
        assert timestamps.render(ms, offset) == reference_render(ms, offset)


def test_render_shape():
    assert timestamps.render(1_626_451_370_037) == "2021-07-16T16:02:50.037Z"
    assert timestamps.render(1_626_451_370_037, -240) == "2021-07-16T12:02:50.037-04:00"
    assert timestamps.render(None) is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2021-08-10T09:41:53-04:00", 1_628_602_913_000),
        ("2021-08-10T13:41:53Z", 1_628_602_913_000),
        ("2021-08-10T13:41:53", 1_628_602_913_000),  # offset-less: UTC
        ("2021-08-10T13:41:53.123456Z", 1_628_602_913_123),  # truncated to ms
        ("2021-08-10", 1_628_553_600_000),
    ],
)
def test_parse_iso(text, expected):
    assert timestamps.parse_iso(text, field="t") == expected


def test_parse_iso_names_the_field():
    with pytest.raises(ApiError) as caught:
        timestamps.parse_iso("yesterday", field="start_time")
    assert caught.value.status == 400 and "start_time" in caught.value.detail


@pytest.mark.parametrize("value, minutes", [("-04:00", -240), ("+05:30", 330), ("04:00", 240), (-240, -240), ("-240", -240), ("0", 0)])
def test_parse_offset(value, minutes):
    assert timestamps.parse_offset(value) == minutes


@pytest.mark.parametrize("value", ["EST", "+15:00", "-12:30", "25:00", True, 1.5, None])
def test_parse_offset_rejects(value):
    with pytest.raises(ApiError):
        timestamps.parse_offset(value)


# --- the accepted range, and rendering at its edges -------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0001-01-01T00:00:00Z", timestamps.MIN_MS),
        ("9999-12-31T23:59:59.999Z", timestamps.MAX_MS),
        ("9999-12-31T23:59:59.999+00:00", timestamps.MAX_MS),
        ("0001-01-01T00:00:00-01:00", timestamps.MIN_MS + 3_600_000),
        ("9999-12-31T23:59:59.999+01:00", timestamps.MAX_MS - 3_600_000),
    ],
)
def test_parse_instant_accepts_the_range_inclusive(text, expected):
    assert timestamps.parse_instant(text, field="timestamp") == expected


@pytest.mark.parametrize(
    "text",
    ["9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59.999-00:01", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00.000+00:01"],
)
def test_parse_instant_refuses_instants_outside_the_range_naming_the_field(text):
    with pytest.raises(ApiError) as caught:
        timestamps.parse_instant(text, field="timestamp")
    assert caught.value.status == 400 and "`timestamp`" in caught.value.detail and "9999-12-31" in caught.value.detail


def test_check_range_is_the_one_rule_for_numbers_too():
    assert timestamps.check_range(timestamps.MAX_MS, field="t") == timestamps.MAX_MS
    for ms in (timestamps.MIN_MS - 1, timestamps.MAX_MS + 1, 2**63 - 1, -(2**63)):
        with pytest.raises(ApiError) as caught:
            timestamps.check_range(ms, field="t")
        assert "`t`" in caught.value.detail


@pytest.mark.parametrize("offset", [-720, -1, 0, 1, 60, 840])
def test_every_accepted_instant_renders_in_every_accepted_offset(offset):
    for ms in (timestamps.MIN_MS, timestamps.MIN_MS + 1, timestamps.MAX_MS - 1, timestamps.MAX_MS, 0):
        rendered = timestamps.render(ms, offset)
        # Always an ISO 8601 string that reads back as the same instant.
        assert timestamps.parse_iso(rendered, field="t") == ms, rendered


def test_an_instant_that_cannot_be_written_in_the_offset_is_rendered_in_utc():
    assert timestamps.render(timestamps.MAX_MS, 60) == "9999-12-31T23:59:59.999Z"
    assert timestamps.render(timestamps.MIN_MS, -60) == "0001-01-01T00:00:00.000Z"
    # One step inside the edge the offset is kept.
    assert timestamps.render(timestamps.MAX_MS - 3_600_000, 60) == "9999-12-31T23:59:59.999+01:00"


@pytest.mark.parametrize(
    "ms, rendered",
    [
        (timestamps.MAX_MS + 1, "+010000-01-01T00:00:00.000Z"),
        (timestamps.MIN_MS - 1, "0000-12-31T23:59:59.999Z"),  # year 0 (1 BC): four digits still
        (timestamps.MIN_MS - 1 - 366 * 86_400_000, "-000001-12-31T23:59:59.999Z"),
        (8_640_000_000_000_000, "+275760-09-13T00:00:00.000Z"),
        (-8_640_000_000_000_000, "-271821-04-20T00:00:00.000Z"),
    ],
)
def test_render_is_total_even_for_stored_values_outside_the_range(ms, rendered):
    # Rows written before the range was enforced (or by other tools) still render: years outside
    # 0001-9999 in ECMAScript's expanded form (a sign and six or more digits), always in UTC.
    # (Expected values: JavaScript's ``new Date(ms).toISOString()``.)
    assert timestamps.render(ms) == rendered
    for offset in (-720, 840):  # in an offset: that offset if it gives a four-digit year, else UTC
        try:
            in_offset = reference_render(ms, offset)
        except (OverflowError, ValueError):  # beyond ``datetime``
            in_offset = None
        assert timestamps.render(ms, offset) in (rendered, in_offset)


def test_render_accepts_any_64_bit_value():
    for ms in (2**63 - 1, -(2**63)):
        assert timestamps.render(ms, -720).endswith("Z")


@pytest.mark.parametrize("value", ["٣٠", "+٠٥:٣٠", "-０４:００", "0４00", "４"])
def test_parse_offset_accepts_ascii_digits_only(value):
    with pytest.raises(ApiError) as caught:
        timestamps.parse_offset(value)
    assert "`time_zone`" in caught.value.detail
