"""A CSV export's cells rendered in Python, byte for byte as the database renders them.

The database renders a CSV export's cells (``exports._Sql.cell``), one selected column per
attribute column. Some column sets it cannot take: more columns than one statement may select
(SQLite: 2,000 result columns; PostgreSQL: 1,664 target entries) or, on SQLite, keys its JSON
paths cannot address (a path has no escapes, so ``"``, ``\\`` and control characters, which the
stored JSON escapes, are never found). Such an export selects each row as one JSON array instead,
``[name, timestamp, user_id, attributes]``, and ``CellRenderer`` turns it into the row's cells as
the database would have: strings as they are, objects and nulls empty, anything else as the
database writes JSON — SQLite compact with each number as stored, PostgreSQL with jsonb's
``", "``/``": "`` and its own number text. Numbers are kept as their text (never through a float),
so they come out exactly as the database wrote them.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence


class _Number:
    """A JSON number, as the text the database wrote."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


_decode = json.JSONDecoder(parse_float=_Number, parse_int=_Number).decode
# Both databases escape a string's `"`, `\` and control characters as this does (lower-case \u00xx).
_quote = json.JSONEncoder(ensure_ascii=False).encode

Columns = Sequence[tuple[str, Sequence[Sequence[str]]]]


class CellRenderer:
    """Rows of cells from the database's JSON rows, for ``columns``: ``[(name, [path, ...])]``,
    a column showing the first of its paths that is not null (as ``coalesce`` does)."""

    def __init__(self, columns: Columns, dialect: str):
        self.paths = [[tuple(path) for path in paths] for _name, paths in columns]
        self.item_sep, self.key_sep = (", ", ": ") if dialect == "postgresql" else (",", ":")

    def rows(self, lines: Iterable[str]) -> list[list[str | None]]:
        return [self.row(line) for line in lines]

    def row(self, line: str) -> list[str | None]:
        name, timestamp, user_id, attributes = _decode(line)
        cells: list[str | None] = [name, timestamp, user_id]
        for paths in self.paths:
            cell = None
            for path in paths:
                value = attributes
                for part in path:
                    value = value.get(part) if isinstance(value, dict) else None
                cell = self.cell(value)
                if cell is not None:
                    break
            cells.append(cell)
        return cells

    def cell(self, value: Any) -> str | None:
        if value is None or isinstance(value, dict):
            return None
        if isinstance(value, str):
            return value
        return self.json(value)

    def json(self, value: Any) -> str:
        if isinstance(value, _Number):
            return value.text
        if isinstance(value, str):
            return _quote(value)
        if value is True:
            return "true"
        if value is False:
            return "false"
        if value is None:
            return "null"
        if isinstance(value, list):
            return "[" + self.item_sep.join([self.json(item) for item in value]) + "]"
        return "{" + self.item_sep.join([_quote(key) + self.key_sep + self.json(item) for key, item in value.items()]) + "}"
