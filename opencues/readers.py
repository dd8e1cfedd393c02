"""Reading bulk input: one reader for every format the API accepts, and the row validators.

Bulk imports and segment uploads arrive as CSV, newline-delimited JSON or a JSON document and are
stored untouched (see ``opencues.web.intake``); a job later streams them back through
``read_records`` / ``read_user_ids``, which turn each input record into a value — or a
``RowError`` for a record that cannot even be parsed — tagged with its 1-based physical line.
``profile_from_record`` / ``event_from_record`` then validate one value (raising ``RowInvalid``).

Two properties matter beyond correctness of each row:

* **Resumability.** Every yielded item (a record or a ``RowError``) counts as one item, and
  ``skip=N`` discards exactly the first N items as cheaply as the format allows (NDJSON lines are
  not even parsed; CSV records are split but not typed). A job that committed N items
  before a crash resumes with ``skip=N`` and imports each row exactly once. Blank lines are never
  items, in the skipping and the parsing paths alike.
* **Speed.** An import is meant to run at 100,000+ rows/s including database writes, so the hot
  loops avoid per-row regexes and generator layers, and timestamps of the usual
  ``YYYY-MM-DDTHH:MM:SS(.fff)Z`` shape are read with dictionary look-ups. ``bench/bench_readers.py``
  measures them.

The choices where the API document is silent are listed in ``docs/decisions.md`` ("Bulk input").
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from itertools import chain
from typing import BinaryIO, Iterator

import orjson

from opencues.errors import ApiError
from opencues.ids import ALWAYS_SHORT_USER_ID, DOT_SEGMENTS, user_id_problem
from opencues.timestamps import MAX_MS, MIN_MS, OUT_OF_RANGE, parse_instant

__all__ = [
    "Format",
    "RowError",
    "RowInvalid",
    "read_records",
    "read_user_ids",
    "profile_from_record",
    "event_from_record",
    "detect_format",
    "parse_timestamp",
]

_BOM = b"\xef\xbb\xbf"


class Format(StrEnum):
    """An input format; its value is also the stored file's extension."""

    CSV = "csv"
    NDJSON = "ndjson"
    JSON = "json"


@dataclass(frozen=True)
class RowError:
    """An input record that could not be parsed. ``line`` is the 1-based physical line (CSV: the
    record's first line; JSON document: the array index + 1)."""

    line: int
    reason: str


class RowInvalid(Exception):
    """A parsed record that is not a valid profile, event or user id; ``reason`` names the field."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- format detection

_MEDIA_TYPES = {
    "application/ndjson": Format.NDJSON,
    "application/x-ndjson": Format.NDJSON,
    "application/jsonl": Format.NDJSON,
    "application/x-jsonl": Format.NDJSON,
    "application/jsonlines": Format.NDJSON,
    "application/x-jsonlines": Format.NDJSON,
    "text/csv": Format.CSV,
    "application/csv": Format.CSV,
    "text/x-csv": Format.CSV,
    "application/json": Format.JSON,
}

_EXTENSIONS = {
    "csv": Format.CSV,
    "ndjson": Format.NDJSON,
    "jsonl": Format.NDJSON,
    "json": Format.JSON,
}


def detect_format(content_type: str | None, filename: str | None) -> Format | None:
    """The format named by a media type (parameters and case ignored), else by the file name's
    extension; ``None`` when neither tells."""
    if content_type:
        kind = content_type.split(";", 1)[0].strip().lower()
        found = _MEDIA_TYPES.get(kind)
        if found is not None:
            return found
    if filename and "." in filename:
        return _EXTENSIONS.get(filename.rsplit(".", 1)[1].strip().lower())
    return None


# --------------------------------------------------------------------------- readers


def read_records(stream: BinaryIO, fmt: Format, *, skip: int = 0) -> Iterator[tuple[int, object] | RowError]:
    """Yield ``(line, value)`` per input record, or a ``RowError`` for an unparsable one.

    NDJSON: one JSON value per line. JSON: one object (one record) or an array (one record per
    element). CSV: a header line, then one dict per row with cells typed (see ``csv_cell``).
    Blank lines are ignored and not counted; ``skip`` discards the first N items unparsed.
    """
    fmt = Format(fmt)
    if fmt is Format.NDJSON:
        return _ndjson_values(stream, skip)
    if fmt is Format.JSON:
        return _json_records(stream, skip)
    return _csv_records(stream, skip)


def read_user_ids(stream: BinaryIO, fmt: Format, *, skip: int = 0) -> Iterator[tuple[int, str] | RowError]:
    """Yield ``(line, user_id)`` per id of a segment upload, or a ``RowError``.

    NDJSON: one JSON string per line. JSON: ``{"user_ids": [...]}`` (or a bare array). CSV: one id
    per line with an optional ``user_id``/``userId`` header. ``skip`` as in ``read_records``.
    """
    fmt = Format(fmt)
    if fmt is Format.NDJSON:
        return _ndjson_user_ids(stream, skip)
    if fmt is Format.JSON:
        return _json_user_ids(stream, skip)
    return _csv_user_ids(stream, skip)


def _numbered_lines(stream: BinaryIO):
    """``(line_no, bytes)`` pairs with a UTF-8 byte-order mark removed; C-level iteration only."""
    first = stream.readline()
    if not first:
        return iter(())
    if first.startswith(_BOM):
        first = first[3:]
    return enumerate(chain((first,), stream), 1)


def _ndjson_values(stream: BinaryIO, skip: int):
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    lines = _numbered_lines(stream)
    if skip:
        for _line_no, raw in lines:
            if not raw.isspace():
                skip -= 1
                if not skip:
                    break
    for line_no, raw in lines:
        try:
            value = loads(raw)
        except decode_error as exc:
            if raw.isspace():  # a blank line (checked only here: blank lines are rare)
                continue
            yield RowError(line_no, f"invalid JSON: {exc}")
            continue
        yield line_no, value


def _ndjson_user_ids(stream: BinaryIO, skip: int):
    for item in _ndjson_values(stream, skip):
        if type(item) is RowError:
            yield RowError(item.line, "a user id must be a JSON string in double quotes")
            continue
        line_no, value = item
        if type(value) is not str:
            yield RowError(line_no, "a user id must be a JSON string in double quotes")
            continue
        problem = user_id_problem(value)
        if problem is None:
            yield line_no, value
        else:
            yield RowError(line_no, f"user id {problem}")


def _load_document(stream: BinaryIO):
    """The whole JSON document, or a ``RowError`` (line 1) when it is not JSON."""
    data = stream.read()
    if data.startswith(_BOM):
        data = data[3:]
    if not data.strip():
        return []
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return RowError(1, f"invalid JSON: {exc}")


def _json_records(stream: BinaryIO, skip: int):
    document = _load_document(stream)
    if type(document) is RowError:
        if not skip:
            yield document
        return
    values = document if type(document) is list else [document]
    for index in range(skip, len(values)):
        yield index + 1, values[index]


def _json_user_ids(stream: BinaryIO, skip: int):
    document = _load_document(stream)
    if type(document) is RowError:
        if not skip:
            yield document
        return
    if type(document) is dict:
        if "user_ids" not in document:
            if not skip:
                yield RowError(1, "`user_ids` is required: an array of user id strings")
            return
        document = document["user_ids"]
    if type(document) is not list:
        if not skip:
            yield RowError(1, "`user_ids` must be an array of user id strings")
        return
    for index in range(skip, len(document)):
        value = document[index]
        if type(value) is not str:
            yield RowError(index + 1, f"`user_ids[{index}]` must be a string")
            continue
        problem = user_id_problem(value)
        if problem is None:
            yield index + 1, value
        else:
            yield RowError(index + 1, f"`user_ids[{index}]` {problem}")


# --------------------------------------------------------------------------- CSV

# Columns whose cells are never typed: ids and event names are strings even when they look numeric.
_STRING_COLUMNS = frozenset({"user_id", "userId", "name", "group_id", "groupId"})
# A cell can only become a number when it starts with one of these and ends with a digit…
_NUMBER_START = frozenset("-0123456789")
_DIGITS = frozenset("0123456789")
# …and a bool only when it is one of these.
_LITERALS = {"true": True, "false": False, "True": True, "False": False, "TRUE": True, "FALSE": False}
_INT64_MAX = 2**63 - 1
_TYPED_START = _NUMBER_START | frozenset("tfTF")  # any other first character: the cell is text
_NOT_JSON = orjson.JSONDecodeError


def csv_cell(text: str):
    """Type one non-empty CSV cell: ``true``/``false`` (also ``True``, ``TRUE``…) → bool, a number
    in JSON's grammar (``42``, ``-3.5``, ``1e3``; not ``007``, ``+1``, ``1.``) → int or float,
    anything else stays the string. Numbers that would lose digits (integers beyond 64 bits,
    floats that overflow) stay strings.

    The grammar check and the conversion are one call to orjson's parser (strict JSON: no leading
    zeros, no ``+``, no ``NaN``), several times faster than a regular expression then ``int``/``float``;
    a number must also end with a digit, so JSON's surrounding whitespace is never accepted."""
    if text[0] in _NUMBER_START:
        if text[-1] not in _DIGITS:
            return text
        try:
            number = orjson.loads(text)
        except _NOT_JSON:
            return text
        if type(number) is int:
            return number if number <= _INT64_MAX else text
        # orjson reads an integer beyond 64 bits as a float: keep such digits as written.
        if type(number) is float and ("." in text or "e" in text or "E" in text):
            return number
        return text
    return _LITERALS.get(text, text)


class _LineSource:
    """Decoded text lines for the csv module, one per physical line, remembering which physical
    lines were not valid UTF-8 (they are decoded with replacement characters and their record is
    reported as a ``RowError`` instead of being imported with mangled text)."""

    __slots__ = ("stream", "bad_lines")

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.bad_lines: list[int] = []

    def __iter__(self):
        bad = self.bad_lines
        for line_no, raw in _numbered_lines(self.stream):
            try:
                yield raw.decode()
            except UnicodeDecodeError:
                bad.append(line_no)
                yield raw.decode(errors="replace")


def _csv_reader(stream: BinaryIO):
    """A csv reader over the decoded lines, and the list of physical lines that were not UTF-8.

    Spaces at the start of a cell (so a line's indentation) are skipped (``skipinitialspace``);
    the readers below also drop a line's trailing whitespace.
    """
    source = _LineSource(stream)
    return csv.reader(iter(source), strict=True, skipinitialspace=True), source.bad_lines


def _csv_rows(reader, bad: list[int]):
    """``(first_line, row, problem)`` per non-blank CSV record; ``problem`` is None or a reason.
    A row whose cells are all empty is a blank line. (``_csv_records`` inlines this loop.)"""
    next_row = reader.__next__
    previous = reader.line_num
    while True:
        try:
            row = next_row()
        except StopIteration:
            return
        except csv.Error as exc:
            first, previous = previous + 1, reader.line_num
            yield first, [], f"invalid CSV: {exc}"
            continue
        first, previous = previous + 1, reader.line_num
        if row:
            row[-1] = row[-1].rstrip()
        if not any(row):
            continue
        if bad and bad[-1] >= first:
            yield first, row, "not valid UTF-8 text"
            continue
        yield first, row, None


def _csv_header(rows) -> tuple[int, list[str]] | RowError | None:
    """The first non-blank row as column names (stripped; trailing empty names dropped)."""
    for first, row, problem in rows:
        if problem:
            return RowError(first, f"header line: {problem}")
        names = [name.strip() for name in row]
        while names and not names[-1]:
            names.pop()
        if "" in names:
            return RowError(first, f"header line: column {names.index('') + 1} has no name")
        if len(set(names)) != len(names):
            twice = next(name for name in names if names.count(name) > 1)
            return RowError(first, f"header line: column `{twice}` appears twice")
        return first, names
    return None


def _csv_records(stream: BinaryIO, skip: int):
    reader, bad = _csv_reader(stream)
    header = _csv_header(_csv_rows(reader, bad))
    if header is None:
        return
    if type(header) is RowError:
        # A broken header makes the whole file unreadable: one error item, then nothing.
        if not skip:
            yield header
        return
    _line, names = header
    width = len(names)
    # Ids and event names stay text: typed like the rest, then put back as read.
    raw_columns = [(name, index) for index, name in enumerate(names) if name in _STRING_COLUMNS]
    # (A cache of typed cells was tried: big dictionaries of unique texts cost more than typing.)
    cell, typed_start = csv_cell, _TYPED_START
    next_row = reader.__next__
    previous = reader.line_num
    while True:
        try:
            row = next_row()
        except StopIteration:
            return
        except csv.Error as exc:
            first, previous = previous + 1, reader.line_num
            if skip:
                skip -= 1
            else:
                yield RowError(first, f"invalid CSV: {exc}")
            continue
        first, previous = previous + 1, reader.line_num
        if not row:
            continue
        row[-1] = row[-1].rstrip()
        if skip:
            if any(row):
                skip -= 1
            continue
        size = len(row)
        if size > width and any(row[width:]):
            yield RowError(first, f"row has {size} values but the header names {width} columns")
            continue
        record = {}
        for name, text in zip(names, row):
            if text:
                record[name] = cell(text) if text[0] in typed_start else text
        if not record:
            continue  # every cell empty: a blank line
        if bad and bad[-1] >= first:
            yield RowError(first, "not valid UTF-8 text")
            continue
        for name, index in raw_columns:
            if index < size and row[index]:
                record[name] = row[index]
        yield first, record


def _csv_user_ids(stream: BinaryIO, skip: int):
    rows = _csv_rows(*_csv_reader(stream))
    column = None  # headerless: one id per line
    for first, row, problem in rows:
        if problem is None:
            for index, name in enumerate(row):
                if name.strip() in ("user_id", "userId"):
                    column = index
                    break
        if column is None:
            rows = chain([(first, row, problem)], rows)  # not a header: this line is an id
        break

    for first, row, problem in rows:
        if skip:
            skip -= 1
            continue
        if problem is not None:
            yield RowError(first, problem)
            continue
        if column is None:
            # Headerless: one id per line; trailing empty cells are tolerated.
            if len(row) > 1 and any(row[1:]):
                yield RowError(first, "expected one user id per line")
                continue
            value = row[0].strip()
        else:
            value = row[column].strip() if column < len(row) else ""
        problem = user_id_problem(value)
        if problem is None:
            yield first, value
        else:
            yield RowError(first, f"user id {problem}")


# --------------------------------------------------------------------------- validators

_CACHE_LIMIT = 100_000
_day_ms: dict[str, int] = {}  # "YYYY-MM-DDT" → epoch ms at midnight UTC, learned
# Fixed tables (1,440 + 60 + 1,000 entries): "HH:MM" → ms, "SS" → ms, "fff" → ms.
_hour_minute_ms = {f"{h:02d}:{m:02d}": (h * 60 + m) * 60_000 for h in range(24) for m in range(60)}
_second_ms = {f"{s:02d}": s * 1000 for s in range(60)}
_millis = {f"{n:03d}": n for n in range(1000)}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _learn_day(key: str) -> int | None:
    """Cache the midnight of a ``YYYY-MM-DDT`` prefix; None when it is not one."""
    if len(key) != 11 or key[10] not in "Tt" or key[4] != "-" or key[7] != "-":
        return None
    try:
        day = date.fromisoformat(key[:10])
    except ValueError:
        return None
    if len(_day_ms) >= _CACHE_LIMIT:
        _day_ms.clear()
    ms = _day_ms[key] = (day.toordinal() - _EPOCH_ORDINAL) * 86_400_000
    return ms


def parse_timestamp(text: str) -> int:
    """ISO 8601 → epoch ms; offset-less times are UTC. ``YYYY-MM-DDTHH:MM:SS[.fff]Z`` — what
    exporters write — costs four dictionary look-ups (day, hour and minute, second, milliseconds);
    every other ISO 8601 form goes through ``opencues.timestamps.parse_instant`` (so within its
    range: the fast path only reads years 0001-9999 in UTC, all inside it). Raises ``RowInvalid``."""
    size = len(text)
    try:
        if size == 24:
            if text[19] == "." and text[23] == "Z" and text[16] == ":":
                return (
                    _day_ms[text[:11]] + _hour_minute_ms[text[11:16]] + _second_ms[text[17:19]] + _millis[text[20:23]]
                )
        elif size == 20 and text[19] == "Z" and text[16] == ":":
            return _day_ms[text[:11]] + _hour_minute_ms[text[11:16]] + _second_ms[text[17:19]]
    except KeyError:
        if text[:11] not in _day_ms and _learn_day(text[:11]) is not None:
            # A day seen for the first time, now learnt: the fast path applies.
            return parse_timestamp(text)
    return _parse_timestamp_slowly(text)


def _parse_timestamp_slowly(text: str) -> int:
    try:
        return parse_instant(text, field="timestamp")
    except ApiError as exc:
        raise RowInvalid(exc.detail) from None


def _user_id(value: object, other: object) -> str:
    """The id from ``user_id`` (``value``) or ``userId`` (``other``); a whole number becomes its
    decimal text."""
    if value is None:
        value = other
    elif other is not None and other != value:
        raise RowInvalid("`user_id` and `userId` differ; give one of them")
    kind = type(value)
    if kind is str:
        problem = user_id_problem(value)
        if problem is None:
            return value
        raise RowInvalid(f"`user_id` {problem}")
    if value is None:
        raise RowInvalid("`user_id` (or `userId`) is required")
    if kind is int:
        return str(value)
    if kind is float and value.is_integer():
        return str(int(value))
    raise RowInvalid("`user_id` must be a non-empty string")


def _needs_checking(user_id: object, record: dict) -> bool:
    """False for the usual ``user_id`` (a short, printable, lone string), which follows
    ``opencues.ids``' rule without asking it; ``_user_id`` decides the rest."""
    return (
        type(user_id) is not str or "userId" in record or not user_id or len(user_id) > ALWAYS_SHORT_USER_ID
        or not user_id.isprintable() or user_id.isspace() or user_id in DOT_SEGMENTS
    )  # fmt: skip


def profile_from_record(value: object) -> tuple[str, dict]:
    """``(user_id, attributes)`` of one profile update. Every field but ``user_id``/``userId`` is
    an attribute; a ``null`` attribute means "remove this key" when merged."""
    if type(value) is not dict:
        raise RowInvalid("a profile must be a JSON object with a `user_id`")
    attributes = value.copy()
    pop = attributes.pop
    user_id = pop("user_id", None)
    if _needs_checking(user_id, attributes):
        user_id = _user_id(user_id, pop("userId", None))
    return user_id, attributes


def event_from_record(value: object, *, owned: bool = False) -> tuple[str, str, int, dict]:
    """``(user_id, name, timestamp_ms, attributes)`` of one event.

    ``timestamp`` is an ISO 8601 string (offset-less means UTC) or epoch milliseconds. Fields other
    than ``user_id``/``userId``/``name``/``timestamp``/``attributes`` are attributes, and so are the
    keys of the ``attributes`` object, which wins when both carry the same key. ``owned``: the
    caller never reads ``value`` again, so it becomes the attributes itself (no copy; imports).
    """
    if type(value) is not dict:
        raise RowInvalid("an event must be a JSON object with `user_id`, `name` and `timestamp`")
    attributes = value if owned else value.copy()
    pop = attributes.pop
    user_id = pop("user_id", None)
    if _needs_checking(user_id, attributes):
        user_id = _user_id(user_id, pop("userId", None))
    name = pop("name", None)
    if type(name) is not str or not name or name.isspace() or "\x00" in name:
        if name is None:
            raise RowInvalid("`name` is required")
        if type(name) is str and "\x00" in name:
            raise RowInvalid("`name` must not contain NUL characters")
        raise RowInvalid("`name` must be a non-empty string")
    stamp = pop("timestamp", None)
    if type(stamp) is str:
        timestamp = parse_timestamp(stamp)
    else:
        timestamp = _numeric_timestamp(stamp)
    if "attributes" in attributes:
        nested = pop("attributes")
        if type(nested) is dict:
            if attributes:
                attributes.update(nested)
            else:
                attributes = nested.copy()
        elif nested is not None:
            raise RowInvalid("`attributes` must be an object")
    return user_id, name, timestamp, attributes


_INFINITIES = (float("inf"), float("-inf"))


def _numeric_timestamp(stamp: object) -> int:
    kind = type(stamp)
    if kind is int or kind is float:
        if stamp != stamp or stamp in _INFINITIES:  # int() would raise
            raise RowInvalid("`timestamp` is out of range")
        timestamp = int(stamp)
        if MIN_MS <= timestamp <= MAX_MS:
            return timestamp
        raise RowInvalid(f"`timestamp` {OUT_OF_RANGE}")
    if stamp is None:
        raise RowInvalid("`timestamp` is required")
    raise RowInvalid("`timestamp` must be an ISO 8601 string or milliseconds since 1970")


def group_from_record(value: object) -> tuple[str, dict]:
    """``(group_id, properties)`` of one group update (``import/groups``). Every field but
    ``group_id``/``groupId`` is a property; a ``null`` property means "remove this key" when merged."""
    if type(value) is not dict:
        raise RowInvalid("a group must be a JSON object with a `group_id`")
    properties = value.copy()
    group_id = properties.pop("group_id", None)
    other = properties.pop("groupId", None)
    if group_id is None:
        group_id = other
    elif other is not None and other != group_id:
        raise RowInvalid("`group_id` and `groupId` differ; give one of them")
    kind = type(group_id)
    if kind is int or (kind is float and group_id.is_integer()):
        return str(int(group_id)), properties
    if group_id is None:
        raise RowInvalid("`group_id` (or `groupId`) is required")
    if kind is not str:
        raise RowInvalid("`group_id` must be a non-empty string")
    problem = user_id_problem(group_id)  # group ids follow the user-id rule
    if problem is not None:
        raise RowInvalid(f"`group_id` {problem}")
    return group_id, properties
