"""Properties of time parsing and rendering: round trips, the fast path agreeing with the slow
one, and totality (no input raises anything but the one error type)."""

from datetime import datetime, timedelta, timezone

from hypothesis import example, given
from hypothesis import strategies as st

from opencues import timestamps
from opencues.errors import ApiError
from opencues.readers import RowInvalid, _parse_timestamp_slowly, parse_timestamp

MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
DAY_MS = 86_400_000

offsets = st.integers(timestamps.MIN_OFFSET_MINUTES, timestamps.MAX_OFFSET_MINUTES)
# Instants whose local time stays inside years 1..9999 at every allowed offset.
instants = st.integers(MIN_MS + DAY_MS, MAX_MS - DAY_MS)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)


@given(instants, offsets)
@example(0, 0)
@example(MIN_MS + DAY_MS, -720)
@example(MAX_MS - DAY_MS, 840)
def test_render_then_parse_is_the_same_instant(ms, offset):
    text = timestamps.render(ms, offset)
    assert len(text) == (24 if offset == 0 else 29)
    assert timestamps.parse_iso(text, field="t") == ms
    assert timestamps.parse_time(text, field="t") == ms


@given(instants)
def test_render_agrees_with_datetime(ms):
    expected = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
    assert timestamps.render(ms) == expected.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert timestamps.datetime_to_ms(expected) == ms


@given(st.integers(MIN_MS, MAX_MS), offsets)
@example(MAX_MS, 840)
@example(MIN_MS, -720)
def test_every_stored_instant_renders_at_every_offset(ms, offset):
    timestamps.render(ms, offset)


@given(st.integers(MIN_MS, MAX_MS))
def test_the_fast_path_reads_what_render_writes(ms):
    text = timestamps.render(ms)
    assert parse_timestamp(text) == ms
    assert parse_timestamp(text[:19] + "Z") == ms - ms % 1000


# Strings shaped like the fast path's two forms, with any character in any position drawn from
# the ones that matter (digits, separators, the zone letter): the fast path must agree with the
# general parser on every one of them — same instant, or both rejecting.
_shape_chars = st.sampled_from("0123456789-:.TtZz +x")
_near_timestamps = st.one_of(
    st.lists(_shape_chars, min_size=24, max_size=24).map("".join),
    st.lists(_shape_chars, min_size=20, max_size=20).map("".join),
    st.builds(
        lambda ms, i, c: (lambda t: t[:i] + c + t[i + 1 :])(timestamps.render(ms)),
        st.integers(MIN_MS, MAX_MS), st.integers(0, 23), _shape_chars,
    ),
)


def _outcome(parse, text):
    try:
        return parse(text)
    except RowInvalid:
        return RowInvalid


@given(_near_timestamps)
@example("2021-02-29T00:00:00.000Z")
@example("2021-01-01T24:00:00.000Z")
@example("2021-01-01t10:00:00.000Z")
@example("2021-01-01T10:60:00Z")
def test_the_fast_path_agrees_with_the_general_parser(text):
    assert _outcome(parse_timestamp, text) == _outcome(_parse_timestamp_slowly, text)


@given(st.text())
@example("\x00")
@example("9999-12-31T23:59:59.999-12:00")
def test_parse_timestamp_is_total(text):
    try:
        ms = parse_timestamp(text)
    except RowInvalid:
        return
    assert MIN_MS <= ms <= MAX_MS


@given(json_values | st.datetimes().map(lambda d: d.isoformat()))
@example(float("inf"))
@example(float("nan"))
@example(1e300)
@example("+99999-01-01")
def test_parse_time_raises_only_api_errors(value):
    try:
        ms = timestamps.parse_time(value, field="t")
    except ApiError as exc:
        assert exc.status == 400 and "`t`" in exc.detail
        return
    assert isinstance(ms, int)


@given(st.datetimes(timezones=st.just(timezone.utc) | st.builds(lambda m: timezone(timedelta(minutes=m)), offsets)),
       st.sampled_from(["seconds", "milliseconds", "microseconds", "minutes"]))
def test_iso_strings_in_any_offset_parse_to_their_instant(moment, timespec):
    text = moment.isoformat(timespec=timespec)
    expected = timestamps.datetime_to_ms(moment.replace(second=0, microsecond=0) if timespec == "minutes" else moment)
    if timespec == "seconds":
        expected = timestamps.datetime_to_ms(moment.replace(microsecond=0))
    elif timespec == "milliseconds":
        expected = timestamps.datetime_to_ms(moment.replace(microsecond=moment.microsecond // 1000 * 1000))
    assert timestamps.parse_iso(text, field="t") == expected


@given(offsets)
def test_offsets_round_trip_in_every_spelling(minutes):
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    for spelling in (f"{sign}{hours:02d}:{mins:02d}", f"{sign}{hours:02d}{mins:02d}", str(minutes), minutes, float(minutes)):
        assert timestamps.parse_offset(spelling) == minutes, spelling
    suffix = timestamps.render(0, minutes)[23:]
    assert timestamps.parse_offset("+00:00" if suffix == "Z" else suffix) == minutes


@given(json_values | st.from_regex(r"\A[+-]?\d{1,4}(:?\d{2})?\Z") | st.integers())
@example("٣٠")
@example("-0:60")
@example(True)
def test_parse_offset_raises_only_api_errors(value):
    try:
        minutes = timestamps.parse_offset(value)
    except ApiError as exc:
        assert exc.status == 400 and "`time_zone`" in exc.detail
        return
    assert isinstance(minutes, int)
    assert timestamps.MIN_OFFSET_MINUTES <= minutes <= timestamps.MAX_OFFSET_MINUTES
