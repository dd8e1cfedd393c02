"""The one CSV writer: every CSV the server produces (responses and export files) goes through here.

Cells follow the API's conventions: booleans ``true``/``false``, null as an empty cell, numbers as
JSON renders them, nested objects flattened into dotted columns (``attributes.button``), lists as
JSON text. Quoting is RFC 4180 (fields quoted when needed, CRLF line ends).
"""

from __future__ import annotations

import csv
import io
from typing import IO, Any, Iterable, Sequence

import orjson


def cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return orjson.dumps(value).decode()
    return orjson.dumps(value).decode()


def flatten(record: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; an empty nested object leaves no column."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


class CsvWriter:
    """Writes rows of cells to a text stream with the API's quoting and line ends."""

    def __init__(self, out: IO[str]):
        self._writer = csv.writer(out, lineterminator="\r\n")

    def header(self, columns: Sequence[str]) -> None:
        self._writer.writerow(columns)

    def row(self, values: Iterable[Any]) -> None:
        self._writer.writerow([cell(v) for v in values])

    def record(self, record: dict[str, Any], columns: Sequence[str]) -> None:
        self._writer.writerow([cell(record.get(c)) for c in columns])

    def cells(self, rows: Iterable[Sequence[str | None]]) -> None:
        """Rows whose values are already cells (text, or None for empty): the export's fast
        path, where the database renders the cells and only quoting is left to do."""
        self._writer.writerows(rows)


def columns_for(flat_records: Sequence[dict], leading: Sequence[str] | None = None) -> list[str]:
    """Column order: ``leading`` then every other key seen, sorted; without ``leading``,
    keys in first-seen order (a profile's own field order)."""
    seen: dict[str, None] = {}
    for record in flat_records:
        for key in record:
            seen.setdefault(key, None)
    if leading is None:
        return list(seen)
    rest = sorted(k for k in seen if k not in leading)
    return list(leading) + rest


def render(
    records: Sequence[dict],
    columns: Sequence[str] | None = None,
    leading: Sequence[str] | None = None,
    *,
    objects_as_json: bool = False,
) -> str:
    """Records (dicts) → a CSV document. With ``columns`` the column set is fixed (flows,
    segments, jobs); otherwise it is derived from the flattened records. ``objects_as_json``:
    a nested object stays one cell of JSON text instead of dotted columns (content objects:
    one column per top-level field)."""
    flat = list(records) if objects_as_json else [flatten(r) for r in records]
    if columns is None:
        columns = columns_for(flat, leading)
    out = io.StringIO()
    writer = CsvWriter(out)
    writer.header(columns)
    for record in flat:
        writer.record(record, columns)
    return out.getvalue()
