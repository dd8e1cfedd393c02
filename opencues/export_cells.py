"""A CSV export's cells rendered in Python, byte for byte as the database renders them.

The database renders a CSV export's cells (``exports._Sql.cell``), one selected column per
attribute column. Some column sets it should not take: many columns (a statement may select at
most 2,000 on SQLite, 1,664 on PostgreSQL, and each cell looks its key up in the row's document
anew, which grows slower than Python past a few hundred keys a row: ``exports.MAX_DATABASE_CELLS``)
or, on SQLite, keys its JSON paths cannot address (a path has no escapes, so ``"``, ``\\`` and
control characters, which the stored JSON escapes, are never found). Such an export selects
each row as one JSON array instead, ``[name, timestamp, user_id, attributes, *extras]``, and
``CellRenderer`` turns it into the row's cells as the database would have: strings as they are,
objects and nulls empty, anything else as the database writes JSON — SQLite compact with each
number as stored, PostgreSQL with jsonb's ``", "``/``": "`` and its own number text. Floats are kept as their text (never through a
float), so they come out exactly as the database wrote them.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import orjson


class _Number:
    """A JSON number, as the text the database wrote."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


_decode = json.JSONDecoder(parse_float=_Number, parse_int=_Number).decode
# Both databases escape a string's `"`, `\` and control characters as this does (lower-case \u00xx).
_quote = json.JSONEncoder(ensure_ascii=False).encode

Columns = Sequence[tuple[str, Sequence[Sequence[str]]]]


class _Inexact(Exception):
    """A cell whose text only the database's own number tokens give (a float, an array)."""


class CellRenderer:
    """Rows of cells from the database's JSON rows, for ``columns``: ``[(name, [path, ...])]``,
    a column showing the first of its paths that is not null (as ``coalesce`` does).

    A row costs its own keys, not the export's columns: the document is walked beside a tree of
    the columns' paths (``{key: (slot, subtree)}``)."""

    def __init__(self, columns: Columns, dialect: str):
        self.width = len(columns)
        self.item_sep, self.key_sep = (", ", ": ") if dialect == "postgresql" else (",", ":")
        self.tree: dict = {}
        for index, (_name, paths) in enumerate(columns):
            for rank, path in enumerate(paths):
                node = self.tree
                for part in path[:-1]:
                    node = node.setdefault(part, [None, {}])[1]
                entry = node.setdefault(path[-1], [None, {}])
                entry[0] = (index, rank, len(paths) > 1)

    def rows(self, lines: Iterable[str]) -> list[list[str | None]]:
        return [self.row(line) for line in lines]

    def row(self, line: str) -> list[str | None]:
        """The row's cells. First read with ``orjson``, which gives strings, booleans and
        integers their exact text; a row holding a float or an array in a cell is read again,
        keeping every number's text as the database wrote it."""
        name, timestamp, user_id, attributes, *extras = orjson.loads(line)
        cells: list[str | None] = [None] * self.width
        try:
            self._fill(attributes, self.tree, cells, {}, _fast_cell)
        except _Inexact:
            name, timestamp, user_id, attributes, *extras = _decode(line)
            cells = [None] * self.width
            self._fill(attributes, self.tree, cells, {}, self.cell)
        return [name, timestamp, user_id, *extras, *cells]

    def _fill(self, document: Any, tree: dict, cells: list, ranks: dict, render) -> None:
        if not isinstance(document, dict):
            return
        for key, value in document.items():
            entry = tree.get(key)
            if entry is None:
                continue
            slot, subtree = entry
            if value.__class__ is dict:
                if subtree:
                    self._fill(value, subtree, cells, ranks, render)
                continue
            if slot is None:
                continue
            cell = render(value)
            if cell is None:
                continue
            index, rank, shared = slot
            if shared:  # several paths, one column: the first path's cell that is not null
                if ranks.get(index, rank + 1) <= rank:
                    continue
                ranks[index] = rank
            cells[index] = cell

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


def _fast_cell(value: Any) -> str | None:
    """A cell from ``orjson``'s value, or ``_Inexact``."""
    if value is None:
        return None
    if value.__class__ is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value.__class__ is int:
        return str(value)
    raise _Inexact
