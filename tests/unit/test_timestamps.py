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
