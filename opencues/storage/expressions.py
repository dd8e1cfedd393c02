"""SQL expressions that read a JSON document the same way on SQLite and PostgreSQL, spelled so
that an index on the expression and a query using it agree textually (both planners match an
expression index only against the same expression).

``AttributeText(events.c.attributes, "flowId")`` renders ``json_extract(attributes,
'$.flowId')`` on SQLite (a JSON string as text, a number as a number, absent as null) and
``(attributes ->> 'flowId')`` on PostgreSQL (always text). The key is inlined as a literal: keys
come from opencues' own tables of names, never from a client.
"""

from __future__ import annotations

import re

from sqlalchemy import Text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class AttributeText(ColumnElement):
    """One top-level key of a JSON column, as SQL text (see the module docstring)."""

    inherit_cache = True
    type = Text()
    _traverse_internals = [("document", InternalTraversal.dp_clauseelement), ("key", InternalTraversal.dp_string)]

    def __init__(self, document, key: str):
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a plain JSON key: {key!r}")
        self.document = document
        self.key = key


@compiles(AttributeText, "sqlite")
def _sqlite(element: AttributeText, compiler, **kw) -> str:
    return f"json_extract({compiler.process(element.document, **kw)}, '$.{element.key}')"


@compiles(AttributeText, "postgresql")
def _postgresql(element: AttributeText, compiler, **kw) -> str:
    return f"({compiler.process(element.document, **kw)} ->> '{element.key}')"
