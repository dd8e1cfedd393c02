"""Properties of the bulk readers: round trips through each format, resumability (``skip=N`` is
exactly the items after the first N, whatever the input), and totality (no input raises: every
item is a value or a ``RowError``, and the row validators raise only ``RowInvalid``)."""

import io

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from opencues.csv_writer import CsvWriter
from opencues.readers import (
    Format,
    RowError,
    RowInvalid,
    csv_cell,
    event_from_record,
    profile_from_record,
    read_records,
    read_user_ids,
)

MIN_MS = -62_135_596_800_000
MAX_MS = 253_402_300_799_999

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=10)  # encodable as UTF-8
json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False) | texts
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(texts, json_values, max_size=4)
formats = st.sampled_from(list(Format))

# Bytes that look like each format (so the interesting paths are reached) and bytes that do not.
_fragments = st.sampled_from([
    b"\n", b"\r\n", b" ", b",", b'"', b'""', b"{", b"}", b"[", b"]", b":", b"\xef\xbb\xbf", b"\xff", b"\xc3",
    b"\x00", b"user_id", b"userId", b"name", b"timestamp", b"1", b"-0", b"1e5", b"true", b"null",
    b'{"user_id": "u1", "name": "n", "timestamp": 0}', b'"u1"', b"a,b\n", b'"a\nb"', b"\t", b"\x0c",
])
hostile_bytes = st.binary(max_size=200) | st.lists(_fragments, max_size=40).map(b"".join)
documents = hostile_bytes | st.lists(json_values, max_size=5).map(lambda vs: b"\n".join(orjson.dumps(v) for v in vs))


def _items(reader, data: bytes, fmt: Format, skip: int = 0) -> list:
    return list(reader(io.BytesIO(data), fmt, skip=skip))


# --------------------------------------------------------------------------- round trips


@given(st.lists(json_values, max_size=8), st.lists(st.sampled_from([b"", b"\n", b"  \n", b"\r\n", b"\t\n"]), min_size=9, max_size=9))
def test_ndjson_round_trip_with_blank_lines(values, blanks):
    out, expected, line = [], [], 0
    for index, value in enumerate(values):
        for blank in filter(None, [blanks[index]]):
            out.append(blank)
            line += 1
        out.append(orjson.dumps(value) + b"\n")
        line += 1
        expected.append((line, value))
    assert _items(read_records, b"".join(out), Format.NDJSON) == expected


@given(st.lists(json_values, max_size=8))
def test_json_document_round_trip(values):
    assert _items(read_records, orjson.dumps(values), Format.JSON) == [(i + 1, v) for i, v in enumerate(values)]


@given(json_objects)
def test_a_json_object_is_one_record(value):
    assert _items(read_records, orjson.dumps(value), Format.JSON) == [(1, value)]


_names = st.sampled_from(["user_id", "userId", "name", "timestamp", "a", "b", "plan", "x y", "é"])
_cells = st.one_of(
    texts,
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False).map(repr),
    st.sampled_from(["true", "False", "TRUE", "007", "+1", "1.", "-", "1e5", "-0", "", " ", "a,b", '"q"', "two\nlines"]),
)


def _written(text: str) -> str:
    """What the reader gives back for a cell the CSV writer wrote: spaces opening an unquoted
    cell are skipped (``skipinitialspace``, a documented choice for indented files)."""
    quoted = any(c in text for c in ',"\r\n')
    return text if quoted else text.lstrip(" ")


@given(st.lists(_names, min_size=1, max_size=5, unique=True), st.data())
def test_csv_round_trip_through_the_csv_writer(names, data):
    rows = data.draw(st.lists(st.lists(_cells.filter(lambda t: "\x00" not in t), min_size=len(names), max_size=len(names)), max_size=6))
    out = io.StringIO(newline="")
    writer = CsvWriter(out)
    writer.header(names)
    writer.cells(rows)
    document = out.getvalue()
    expected, line = [], 1  # the header: names hold no line breaks
    for row in rows:
        first = line + 1
        line += sum(c.count("\n") for c in row) + 1
        texts_read = [_written(c) for c in row]
        texts_read[-1] = texts_read[-1].rstrip()  # a line's trailing whitespace is dropped
        record = {}
        for name, text in zip(names, texts_read):
            if text:
                record[name] = text if name in ("user_id", "userId", "name") else csv_cell(text)
        if record:
            expected.append((first, record))
    got = _items(read_records, document.encode(), Format.CSV)
    assert got == expected


@given(st.integers(-(2**63), 2**63 - 1))
def test_csv_cells_read_integers_exactly(number):
    assert csv_cell(str(number)) == number


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_csv_cells_read_floats_exactly(number):
    text = orjson.dumps(number).decode()
    read = csv_cell(text)
    assert read == number and (type(read) is float or "." not in text and "e" not in text)


@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30))
@example("9223372036854775808")
@example("1" * 400)
@example("1e400")
@example("-")
def test_csv_cells_become_a_value_only_when_nothing_is_lost(text):
    read = csv_cell(text)
    if read is text or isinstance(read, str):
        assert read == text
    elif isinstance(read, bool):
        assert text.lower() == str(read).lower()
    else:
        assert orjson.loads(text) == read
        assert type(read) is float or -(2**63) <= read < 2**63


# --------------------------------------------------------------------------- resumability


@given(documents, formats, st.integers(0, 12))
@example(b"a,b\n\n1,2\n,\n3\n", Format.CSV, 1)
@example(b'"x\n1\n2\n', Format.CSV, 1)
@example(b"\xef\xbb\xbf\n\x0c\n1\n", Format.NDJSON, 1)
def test_skipping_n_records_is_resuming_after_the_first_n(data, fmt, skip):
    every = _items(read_records, data, fmt)
    assert _items(read_records, data, fmt, skip) == every[skip:]


@given(documents, formats, st.integers(0, 12))
@example(b"user_id\n\nu1\n\nu2\n", Format.CSV, 1)
@example(b'{"user_ids": ["a", 1, ""]}', Format.JSON, 2)
def test_skipping_n_user_ids_is_resuming_after_the_first_n(data, fmt, skip):
    every = _items(read_user_ids, data, fmt)
    assert _items(read_user_ids, data, fmt, skip) == every[skip:]


# --------------------------------------------------------------------------- totality


def _check_items(items, values_are=object):
    previous = 0
    for item in items:
        if type(item) is RowError:
            line = item.line
            assert isinstance(item.reason, str) and item.reason
        else:
            line, value = item
            assert isinstance(value, values_are)
        assert isinstance(line, int) and line >= 1
        assert line >= previous  # items come in input order
        previous = line


@given(documents, formats)
@example(b"\x00\n", Format.CSV)
@example(b'a\n"unterminated', Format.CSV)
@example(b"a,a\n1,2\n", Format.CSV)
@example(b"\xff\xfe", Format.JSON)
def test_every_input_reads_as_records_or_row_errors(data, fmt):
    _check_items(_items(read_records, data, fmt))


@given(documents, formats)
def test_every_input_reads_as_user_ids_or_row_errors(data, fmt):
    items = _items(read_user_ids, data, fmt)
    _check_items(items, values_are=str)
    for item in items:
        if type(item) is not RowError:
            assert item[1].strip() and len(item[1].encode()) <= 1024


_event_like = st.fixed_dictionaries(
    {},
    optional={
        "user_id": json_values | st.sampled_from(["u1", " ", "", 5, 5.0, 5.5, "x" * 2000]),
        "userId": json_values | st.sampled_from(["u1", "u2", 5]),
        "name": json_values | st.sampled_from(["n", " ", ""]),
        "timestamp": json_values | st.sampled_from(["2021-01-01T00:00:00Z", "2021-13-01", "0001-01-01", "9999-12-31T23:59:59.999Z", 1e300, -(2**70)]),
        "attributes": json_values | json_objects,
    },
).flatmap(lambda fixed: json_objects.map(lambda extra: {**extra, **fixed}))


@given(json_values | _event_like)
@example({"user_id": "u", "name": "n", "timestamp": "9999-12-31T23:59:59.999-12:00"})
@example({"user_id": "u", "name": "n", "timestamp": float("inf")})
@example({"user_id": "u", "name": "n", "timestamp": float("nan")})
def test_event_rows_are_valid_or_row_invalid(value):
    try:
        user_id, name, timestamp, attributes = event_from_record(value)
    except RowInvalid as exc:
        assert isinstance(exc.reason, str) and exc.reason
        return
    assert isinstance(user_id, str) and user_id.strip() and len(user_id.encode()) <= 1024
    assert isinstance(name, str) and name.strip()
    assert isinstance(timestamp, int) and MIN_MS <= timestamp <= MAX_MS
    assert isinstance(attributes, dict)
    assert not {"user_id", "userId", "name", "timestamp"} & set(attributes) - set(value.get("attributes") or {})


@given(json_values | _event_like)
def test_profile_rows_are_valid_or_row_invalid(value):
    try:
        user_id, attributes = profile_from_record(value)
    except RowInvalid as exc:
        assert isinstance(exc.reason, str) and exc.reason
        return
    assert isinstance(user_id, str) and user_id.strip() and len(user_id.encode()) <= 1024
    assert isinstance(attributes, dict) and "user_id" not in attributes and "userId" not in attributes
