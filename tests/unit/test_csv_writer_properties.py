"""Properties of the one CSV writer: whatever it writes, Python's csv module reads back as the
same cells and columns."""

import csv
import io

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from opencues import csv_writer

# Any text the server can hold (no lone surrogates: they cannot be stored or sent as UTF-8).
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | texts
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
keys = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=6)
records = st.lists(st.dictionaries(keys, values, max_size=5), max_size=6)


def read_back(document: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(document, newline=""), strict=True))


@given(st.lists(st.lists(st.none() | texts, min_size=1, max_size=5), max_size=6))
@example([["a,b", 'say "hi"', "two\r\nlines", "\r", "\n", " lead", "trail "]])
@example([["\x00", "\x1e\x1f", "\u2028", "\x85"]])
@example([[""], [None]])
def test_cells_round_trip(rows):
    out = io.StringIO(newline="")
    writer = csv_writer.CsvWriter(out)
    writer.header(["h"])
    writer.cells(rows)
    document = out.getvalue()
    expected = [["h"]] + [["" if c is None else c for c in row] for row in rows]
    assert read_back(document) == expected  # a lone empty cell is written "" (not an empty line)
    assert document.endswith("\r\n")


@given(records, st.none() | st.lists(keys, max_size=3, unique=True))
def test_records_round_trip(recs, leading):
    document = csv_writer.render(recs, leading=leading)
    rows = read_back(document)
    flat = [csv_writer.flatten(r) for r in recs]
    columns = rows[0]  # no columns at all: an empty header line, read as []
    seen = {k for f in flat for k in f}
    if leading is not None:
        assert columns[: len(leading)] == leading
        assert columns[len(leading) :] == sorted(seen - set(leading))
    else:
        assert set(columns) == seen and len(columns) == len(seen)
    assert len(rows) == 1 + len(recs)
    for record, row in zip(flat, rows[1:]):
        assert row == [csv_writer.cell(record.get(c)) for c in columns]


@given(values)
def test_a_cell_is_its_value_in_the_apis_spelling(value):
    text = csv_writer.cell(value)
    if value is None:
        assert text == ""
    elif isinstance(value, bool):
        assert text == ("true" if value else "false")
    elif isinstance(value, str):
        assert text == value
    else:
        assert orjson.loads(text) == value


@given(st.dictionaries(keys, values, max_size=5))
def test_flatten_keeps_every_leaf_under_its_dotted_path(record):
    flat = csv_writer.flatten(record)

    def leaves(value, prefix=""):
        for key, inner in value.items():
            if isinstance(inner, dict):
                yield from leaves(inner, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", inner

    expected = {}
    for path, leaf in leaves(record):
        expected[path] = leaf  # a later leaf with the same dotted spelling wins, as in flatten
    assert flat == expected
