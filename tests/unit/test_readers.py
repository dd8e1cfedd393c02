"""The bulk input readers and row validators (no database, no HTTP)."""

import io

import orjson
import pytest

from opencues.readers import (
    Format,
    RowError,
    RowInvalid,
    csv_cell,
    detect_format,
    event_from_record,
    parse_timestamp,
    profile_from_record,
    read_records,
    read_user_ids,
)
from opencues.timestamps import parse_iso


def records(data: bytes, fmt: str, **kw) -> list:
    return list(read_records(io.BytesIO(data), Format(fmt), **kw))


def user_ids(data: bytes, fmt: str, **kw) -> list:
    return list(read_user_ids(io.BytesIO(data), Format(fmt), **kw))


# ---------------------------------------------------------------- NDJSON


def test_ndjson_yields_values_with_physical_line_numbers():
    data = b'\xef\xbb\xbf{"user_id": "a"}\n\n   \t\r\n{"user_id": "b", "n": 1.5}\r\n[1, 2]\n"x"'
    assert records(data, "ndjson") == [(1, {"user_id": "a"}), (4, {"user_id": "b", "n": 1.5}), (5, [1, 2]), (6, "x")]


def test_ndjson_invalid_lines_are_row_errors_and_reading_goes_on():
    # The spec's own profile example has an unquoted key on its third line.
    data = b'{"user_id": "a"}\n{"user_id": "c", isAdmin: true}\n{"user_id": "d"}\n'
    items = records(data, "ndjson")
    assert items[0] == (1, {"user_id": "a"})
    assert isinstance(items[1], RowError) and items[1].line == 2 and "invalid JSON" in items[1].reason
    assert items[2] == (3, {"user_id": "d"})


def test_an_empty_stream_has_no_items():
    for fmt in Format:
        assert records(b"", fmt) == [] and user_ids(b"", fmt) == []


# ---------------------------------------------------------------- JSON documents


def test_json_array_yields_one_record_per_element_numbered_by_index():
    assert records(b' [{"a": 1}, {"b": 2}, 3] ', "json") == [(1, {"a": 1}), (2, {"b": 2}), (3, 3)]


def test_json_object_is_one_record():
    assert records(b'{"user_id": "a", "x": [1]}', "json") == [(1, {"user_id": "a", "x": [1]})]


def test_invalid_json_document_is_one_row_error():
    [item] = records(b'{"a": ', "json")
    assert isinstance(item, RowError) and item.line == 1


# ---------------------------------------------------------------- CSV

SPEC_PROFILES_CSV = b"""
user_id,email,first_name,is_admin
some-id-here,harriet@example.com,,,
another-user-id,,Snabe,
a-third-user,bumbleborn@example.com,,true
  """


def test_csv_spec_example_with_trailing_commas_blank_and_indented_lines():
    assert records(SPEC_PROFILES_CSV, "csv") == [
        (3, {"user_id": "some-id-here", "email": "harriet@example.com"}),
        (4, {"user_id": "another-user-id", "first_name": "Snabe"}),
        (5, {"user_id": "a-third-user", "email": "bumbleborn@example.com", "is_admin": True}),
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("true", True),
        ("false", False),
        ("TRUE", True),
        ("False", False),
        ("42", 42),
        ("0", 0),
        ("-7", -7),
        ("-3.5", -3.5),
        ("1e3", 1000.0),
        ("2.5E-2", 0.025),
        ("007", "007"),
        ("+1", "+1"),
        ("1.", "1."),
        (".5", ".5"),
        ("-", "-"),
        ("1,000", "1,000"),
        ("12345678901234567890", "12345678901234567890"),  # beyond 64 bits: kept exactly
        ("18446744073709551616", "18446744073709551616"),  # beyond unsigned 64 bits too
        ("-9223372036854775809", "-9223372036854775809"),
        ("9223372036854775807", 9223372036854775807),
        ("-9223372036854775808", -9223372036854775808),
        ("-0", 0),
        ("1 2", "1 2"),
        ("1\t", "1\t"),
        ("12abc3", "12abc3"),
        ("2021-07-14", "2021-07-14"),
        ("-1e999", "-1e999"),
        ("fals", "fals"),
        ("free", "free"),
        ("1e999", "1e999"),
        ("٣", "٣"),  # a non-ASCII digit is text
        ("tru", "tru"),
        ("2021-07-14T12:34:56Z", "2021-07-14T12:34:56Z"),
        ("null", "null"),
        ("red", "red"),
    ],
)
def test_csv_cell_typing(text, expected):
    value = csv_cell(text)
    assert value == expected and type(value) is type(expected)


def test_csv_ids_and_names_stay_strings():
    data = b"user_id,name,count,flag\n007,404,12,\n"
    assert records(data, "csv") == [(2, {"user_id": "007", "name": "404", "count": 12})]
    assert records(b"userId,x\n12,12\n", "csv") == [(2, {"userId": "12", "x": 12})]


def test_csv_indentation_spaces_after_commas_and_trailing_whitespace_are_ignored():
    data = b"  user_id , a,  b  \n    x,  12,  \"q, r\"\n  y ,1, z \t\r\n"
    assert records(data, "csv") == [
        (2, {"user_id": "x", "a": 12, "b": "q, r"}),
        (3, {"user_id": "y ", "a": 1, "b": "z"}),  # a space before a comma is part of the cell
    ]


def test_csv_quoted_multiline_record_is_numbered_by_its_first_line():
    data = b'user_id,note\na,"two\nlines"\nb,"x, y"\n'
    assert records(data, "csv") == [(2, {"user_id": "a", "note": "two\nlines"}), (4, {"user_id": "b", "note": "x, y"})]


def test_csv_ragged_rows():
    data = b"user_id,a,b\nshort,1\nextra_empty,1,2,,  ,\nextra_value,1,2,3\nlast,,,\n"
    items = records(data, "csv")
    assert items[0] == (2, {"user_id": "short", "a": 1})
    assert items[1] == (3, {"user_id": "extra_empty", "a": 1, "b": 2})
    assert isinstance(items[2], RowError) and items[2].line == 4 and "4 values" in items[2].reason
    assert items[3] == (5, {"user_id": "last"})


def test_csv_rows_of_only_empty_cells_are_blank_lines():
    assert records(b"user_id,a\n,\n , \nx,1\n", "csv") == [(4, {"user_id": "x", "a": 1})]


def test_csv_bom_and_trailing_empty_header_names():
    assert records(b"\xef\xbb\xbfuser_id,a,,\nx,1,,\n", "csv") == [(2, {"user_id": "x", "a": 1})]


def test_csv_invalid_utf8_and_bad_quoting_are_row_errors_and_reading_goes_on():
    data = b'user_id,a\nx,caf\xe9\ny,"q"z\nz,ok\n'
    items = records(data, "csv")
    assert isinstance(items[0], RowError) and items[0].line == 2 and "UTF-8" in items[0].reason
    assert isinstance(items[1], RowError) and items[1].line == 3 and "invalid CSV" in items[1].reason
    assert items[2] == (4, {"user_id": "z", "a": "ok"})


@pytest.mark.parametrize(
    "header, mentions",
    [(b"user_id,a,user_id", "`user_id` appears twice"), (b"user_id,,a", "column 2 has no name")],
)
def test_csv_broken_header_is_one_row_error(header, mentions):
    [item] = records(header + b"\nx,1,2\ny,3,4\n", "csv")
    assert isinstance(item, RowError) and item.line == 1 and mentions in item.reason


def test_csv_header_only_has_no_records():
    assert records(b"user_id,email\n\n", "csv") == []


# ---------------------------------------------------------------- user ids


def test_ndjson_user_ids_must_be_quoted_non_empty_strings():
    data = b'\n"some-id-here"\nanother-user-id\n42\n""\n{"user_id": "x"}\n"a-third-user"\n'
    items = user_ids(data, "ndjson")
    assert items[0] == (2, "some-id-here") and items[-1] == (7, "a-third-user")
    errors = items[1:-1]
    assert [e.line for e in errors] == [3, 4, 5, 6] and all(isinstance(e, RowError) for e in errors)
    assert "JSON string" in errors[0].reason and "empty" in errors[2].reason


@pytest.mark.parametrize("header", [b"user_id\n", b"userId\n", b""])
def test_csv_user_ids_with_optional_header(header):
    offset = 1 if header else 0
    data = header + b"some-id-here\n\n  another-user-id \n"
    assert user_ids(data, "csv") == [(1 + offset, "some-id-here"), (3 + offset, "another-user-id")]


def test_csv_user_ids_other_first_line_is_an_id_and_extra_columns_are_errors():
    items = user_ids(b"email\nb,\nc,d\n,\n", "csv")
    assert items[:2] == [(1, "email"), (2, "b")]
    assert isinstance(items[2], RowError) and "one user id per line" in items[2].reason
    assert len(items) == 3  # the all-empty row is a blank line


def test_csv_user_ids_header_may_name_the_column_among_others():
    assert user_ids(b"email,user_id\nx@y,a\nz@y,\n", "csv")[0] == (2, "a")
    assert "empty" in user_ids(b"email,user_id\nz@y,\n", "csv")[0].reason


def test_json_user_ids():
    items = user_ids(b'{"user_ids": ["a", 2, "", "b"]}', "json")
    assert items[0] == (1, "a") and items[3] == (4, "b")
    assert "`user_ids[1]`" in items[1].reason and "empty" in items[2].reason
    assert user_ids(b'["x"]', "json") == [(1, "x")]
    [error] = user_ids(b'{"ids": ["x"]}', "json")
    assert "`user_ids` is required" in error.reason


# ---------------------------------------------------------------- skip (exactly-once resumption)

SKIP_CASES = [
    (read_records, "ndjson", b'{"a":1}\n\n{bad\n  \n{"a":2}\n[3]\n"x"\n'),
    (read_records, "json", b'[{"a":1}, 2, {"b":3}, null]'),
    (read_records, "json", b"{not json"),
    (read_records, "csv", b'a,b\n1,2\n\n,\nx,"y\nz"\n1,2,3\nq,caf\xe9\nr,"s"t\nlast,1\n'),
    (read_records, "csv", b"a,a\n1,2\n"),
    (read_user_ids, "ndjson", b'"a"\n\nb\n""\n"c"\n'),
    (read_user_ids, "csv", b"user_id\na\n\nb,c\n,\nd\n"),
    (read_user_ids, "csv", b"a\nb\n,x\n"),
    (read_user_ids, "json", b'{"user_ids": ["a", 1, "", "b"]}'),
]


@pytest.mark.parametrize("reader, fmt, data", SKIP_CASES)
def test_skip_n_yields_exactly_the_items_after_the_first_n(reader, fmt, data):
    everything = list(reader(io.BytesIO(data), Format(fmt)))
    assert everything, "the case must have items"
    for n in range(len(everything) + 2):
        assert list(reader(io.BytesIO(data), Format(fmt), skip=n)) == everything[n:], n


# ---------------------------------------------------------------- profiles


def test_profile_user_id_and_attributes():
    assert profile_from_record({"user_id": "a", "email": "x@y", "gone": None}) == ("a", {"email": "x@y", "gone": None})
    assert profile_from_record({"userId": "b", "n": 1}) == ("b", {"n": 1})
    assert profile_from_record({"user_id": 123}) == ("123", {})
    assert profile_from_record({"user_id": "same", "userId": "same"}) == ("same", {})


def test_profile_record_is_not_modified():
    record = {"user_id": "a", "x": 1}
    profile_from_record(record)
    assert record == {"user_id": "a", "x": 1}


@pytest.mark.parametrize(
    "value, mentions",
    [
        ({"email": "x"}, "`user_id` (or `userId`) is required"),
        ({"user_id": ""}, "non-empty"),
        ({"user_id": "  "}, "non-empty"),
        ({"user_id": True}, "non-empty string"),
        ({"user_id": 1.5}, "non-empty string"),
        ({"user_id": ["a"]}, "non-empty string"),
        ({"user_id": "a", "userId": "b"}, "differ"),
        (["a"], "JSON object"),
        ("a", "JSON object"),
    ],
)
def test_invalid_profiles(value, mentions):
    with pytest.raises(RowInvalid) as caught:
        profile_from_record(value)
    assert mentions in caught.value.reason


# ---------------------------------------------------------------- events


def test_event_spec_examples():
    first = {"user_id": "some-id-here", "name": "Clicked thing", "timestamp": "2021-07-14T12:34:56Z", "color": "red"}
    second = {"user_id": "another-user-id", "name": "Made purchase", "timestamp": "2021-07-14T13:57:22Z",
              "attributes": {"method": "visa"}}  # fmt: skip
    assert event_from_record(first) == ("some-id-here", "Clicked thing", 1626266096000, {"color": "red"})
    assert event_from_record(second) == ("another-user-id", "Made purchase", 1626271042000, {"method": "visa"})


def test_event_attributes_object_wins_over_top_level_fields():
    record = {"userId": "u", "name": "n", "timestamp": 1626266096123, "color": "red", "size": 1,
              "attributes": {"color": "blue"}}  # fmt: skip
    assert event_from_record(record) == ("u", "n", 1626266096123, {"color": "blue", "size": 1})
    assert record["attributes"] == {"color": "blue"} and record["color"] == "red"


def test_an_owned_event_record_becomes_the_attributes_without_a_copy():
    record = {"user_id": "u", "name": "n", "timestamp": 1626266096123, "color": "red", "attributes": {"size": 1}}
    expected = event_from_record(dict(record))
    assert event_from_record(record) == expected and record["color"] == "red"  # not owned: untouched
    result = event_from_record(record, owned=True)
    assert result == expected and result[3] is record  # owned: the record itself, now the attributes


def test_event_from_csv_row():
    [(line, row)] = records(b"user_id,name,timestamp,color,method\nu,404,2021-07-14T12:34:56Z,,visa\n", "csv")
    assert event_from_record(row) == ("u", "404", 1626266096000, {"method": "visa"})


@pytest.mark.parametrize(
    "changes, mentions",
    [
        ({"user_id": None}, "`user_id` (or `userId`) is required"),
        ({"name": None}, "`name` is required"),
        ({"name": ""}, "`name` must be a non-empty string"),
        ({"name": 5}, "`name` must be a non-empty string"),
        ({"timestamp": None}, "`timestamp` is required"),
        ({"timestamp": "yesterday"}, "`timestamp`"),
        ({"timestamp": "2021-02-30T00:00:00Z"}, "`timestamp`"),
        ({"timestamp": "2021-07-14T24:00:00Z"}, "`timestamp`"),
        ({"timestamp": True}, "`timestamp` must be"),
        ({"timestamp": 10**20}, "`timestamp` is out of range"),
        ({"attributes": "x"}, "`attributes` must be an object"),
    ],
)
def test_invalid_events(changes, mentions):
    record = {"user_id": "u", "name": "n", "timestamp": "2021-07-14T12:34:56Z", **changes}
    record = {k: v for k, v in record.items() if v is not None}
    with pytest.raises(RowInvalid) as caught:
        event_from_record(record)
    assert mentions in caught.value.reason


def test_event_must_be_an_object():
    with pytest.raises(RowInvalid, match="JSON object"):
        event_from_record([1])


@pytest.mark.parametrize(
    "text",
    [
        "2021-07-14T12:34:56Z",
        "2021-07-14T12:34:56.1Z",
        "2021-07-14T12:34:56.12Z",
        "2021-07-14T12:34:56.123Z",
        "2021-07-14T12:34:56.123456Z",
        "2021-07-14t12:34:56z",
        "1969-12-31T23:59:59.999Z",
        "2024-02-29T00:00:00Z",
        "2021-07-14T12:34:56",
        "2021-07-14T12:34:56.5+02:00",
        "2021-07-14T12:34Z",
        "2021-07-14",
        "2021-07-14 12:34:56Z",
    ],
)
def test_parse_timestamp_agrees_with_parse_iso(text):
    assert parse_timestamp(text) == parse_iso(text, field="timestamp")
    assert parse_timestamp(text) == parse_timestamp(text)  # cached path too


@pytest.mark.parametrize("text", ["2021-13-01T00:00:00Z", "2021-07-14T12:60:00Z", "2021-07-14T12:34:5xZ", "2021-07-14T12:34:56.12xZ", "2021-07-14T1:34:56.123Z"])
def test_parse_timestamp_rejects_bad_dates(text):
    with pytest.raises(RowInvalid):
        parse_timestamp(text)


# ---------------------------------------------------------------- format detection


@pytest.mark.parametrize(
    "content_type, filename, expected",
    [
        ("application/ndjson", None, Format.NDJSON),
        ("application/x-ndjson; charset=utf-8", None, Format.NDJSON),
        ("Application/JSONL", None, Format.NDJSON),
        ("application/x-jsonlines", None, Format.NDJSON),
        ("text/csv; charset=utf-8", None, Format.CSV),
        ("application/csv", None, Format.CSV),
        ("application/json", "x.csv", Format.JSON),
        ("application/octet-stream", "data.CSV", Format.CSV),
        ("text/plain", "data.jsonl", Format.NDJSON),
        (None, "a.b.ndjson", Format.NDJSON),
        (None, "x.json", Format.JSON),
        ("text/plain", "data.txt", None),
        (None, "noext", None),
        (None, None, None),
    ],
)
def test_detect_format(content_type, filename, expected):
    assert detect_format(content_type, filename) is expected


def test_user_ids_over_the_length_limit_are_row_errors_in_every_form():
    ok, too_long = "a" * 1024, "a" * 1025
    event = {"name": "e", "timestamp": "2021-01-01T00:00:00Z"}
    rows = [{"user_id": ok, **event}, {"user_id": too_long, **event}, {"userId": too_long, **event}]
    data = b"\n".join(orjson.dumps(r) for r in rows)
    read = [item if isinstance(item, RowError) else _event_or_error(item) for item in records(data, "ndjson")]
    assert read[0][0] == ok and all(isinstance(r, RowError) and "1024 bytes" in r.reason for r in read[1:])
    with pytest.raises(RowInvalid, match="1024 bytes"):
        profile_from_record({"user_id": too_long})
    lists = {
        "ndjson": orjson.dumps(ok) + b"\n" + orjson.dumps(too_long),
        "json": orjson.dumps({"user_ids": [ok, too_long]}),
        "csv": f"user_id\n{ok}\n{too_long}\n".encode(),
    }
    for fmt, data in lists.items():
        first, second = user_ids(data, fmt)
        assert first[1] == ok, fmt
        assert isinstance(second, RowError) and "1024 bytes" in second.reason, fmt


def _event_or_error(item):
    try:
        return event_from_record(item[1])
    except RowInvalid as exc:
        return RowError(item[0], exc.reason)
