"""The export conditions language: validation and compilation to one SQLAlchemy expression.

``parse(conditions)`` checks a request's ``conditions`` (``docs/exports.md`` and
``/shared/spec/export-conditions.md`` define the language) and returns a tree of ``Comparison``
and ``Conjunction`` nodes; any problem is a 400 whose detail points at the item, e.g.
``conditions[1][0]: unknown field "flowid"``. ``compile_conditions(tree, dialect, account_id)``
turns the tree into a WHERE clause over ``events`` for SQLite (``json_extract``/``json_type``)
or PostgreSQL (JSONB operators). Values are always bound parameters.

Semantics, the same on both databases:

- Values compare by JSON type: ``"9"`` never equals ``9``; a boolean never equals ``1``.
- An absent attribute, or a JSON null, is null; null matches no comparison. Negated operators
  (``!=``, ``not like``, ``not ilike``, ``not in``) mean "present, and not …", so they do not
  match nulls either. ``["not", c]`` is the plain complement of ``c`` (two-valued logic), so it
  does match events where ``c``'s field is null.
- Ordering (``<`` …) compares numbers with numbers and strings with strings (by code point);
  a value of the other type never matches.
- ``like`` is case-sensitive on both databases (SQLite's own LIKE is not, so a case-sensitive
  pattern runs as the equivalent GLOB); ``ilike`` folds ASCII case on SQLite, all case on PostgreSQL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Union

from sqlalchemy import Boolean, ColumnElement, Text, and_, false, func, literal, not_, or_, select, true, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from opencues import timestamps
from opencues.errors import ApiError, bad_request
from opencues.storage.schema import events, segment_members

MAX_DEPTH = 32
MAX_NODES = 10_000
MAX_IN_VALUES = 10_000
_INT64 = 2**63
# Every number compared with a column or bound to a statement fits both databases' BIGINT (and
# Python's sqlite3/psycopg, which raise OverflowError beyond): epoch ms and integers.
INT64_MIN, INT64_MAX = -_INT64, _INT64 - 1

COMPARISON_OPS = ("==", "!=", "<", "<=", ">", ">=", "like", "not like", "ilike", "not ilike", "in", "not in")
UNARY_OPS = ("is null", "is not null")
ORDERING_OPS = ("<", "<=", ">", ">=")
LIKE_OPS = ("like", "not like", "ilike", "not ilike")
NEGATED = {"!=": "==", "not like": "like", "not ilike": "ilike", "not in": "in"}
CONJUNCTIONS = ("and", "or", "not")


@dataclass(frozen=True)
class Field:
    """What a condition's field reads: a column, the time, segment membership or an attribute."""

    name: str
    kind: str  # "column" | "time" | "segment" | "attribute"
    column: str | None = None
    path: tuple[str, ...] = ()
    nps_only: bool = False  # the field exists only on NPS events (`name` like 'appcues:nps%')


_ATTRIBUTE_FIELDS = {
    "flow_id": "flowId",
    "flow_version": "flowVersion",
    "flow_type": "flowType",
    "step_id": "stepId",
    "step_type": "stepType",
    "step_child_id": "stepChildId",
    "checklist_id": "checklistId",
    "checklist_item_id": "itemId",
}

FIELDS: dict[str, Field] = {
    "name": Field("name", "column", column="name"),
    "user_id": Field("user_id", "column", column="user_id"),
    "timestamp": Field("timestamp", "time"),
    "user_segment_id": Field("user_segment_id", "segment"),
    **{name: Field(name, "attribute", path=(key,)) for name, key in _ATTRIBUTE_FIELDS.items()},
    "nps_score": Field("nps_score", "attribute", path=("score",), nps_only=True),
    "nps_feedback": Field("nps_feedback", "attribute", path=("feedback",), nps_only=True),
}
NPS_NAME_PREFIX = "appcues:nps"
SEGMENT_OPS = ("==", "!=", "in", "not in")


@dataclass(frozen=True)
class Comparison:
    field: Field
    op: str
    value: Any = None  # a scalar, a list of scalars for in/not in, epoch ms for `timestamp`


@dataclass(frozen=True)
class Conjunction:
    kind: str  # "and" | "or" | "not"
    operands: tuple["Node", ...]


Node = Union[Comparison, Conjunction]


# --- parsing -------------------------------------------------------------------------------


class _Budget:
    def __init__(self) -> None:
        self.nodes = 0


def _fail(where: str, message: str) -> ApiError:
    return bad_request(f"{where}: {message}")


def parse(conditions: Any, *, tz: timezone = timezone.utc, where: str = "conditions") -> Conjunction:
    """Validate ``conditions`` and return them as one implicit-AND node. ``tz`` reads dates
    and offset-less times given as ``timestamp`` values."""
    if not isinstance(conditions, list):
        raise _fail(where, "must be an array of conditions (use [] to export every event)")
    budget = _Budget()
    items = tuple(_parse_node(item, f"{where}[{i}]", 1, budget, tz) for i, item in enumerate(conditions))
    return Conjunction("and", items)


def _parse_node(item: Any, where: str, depth: int, budget: _Budget, tz: timezone) -> Node:
    budget.nodes += 1
    if budget.nodes > MAX_NODES:
        raise _fail(where, f"too many conditions (at most {MAX_NODES} in all)")
    if depth > MAX_DEPTH:
        raise _fail(where, f"conditions nest too deeply (at most {MAX_DEPTH} levels)")
    if not isinstance(item, list) or not item:
        raise _fail(where, "a condition must be a non-empty array: [field, operator, value] or [conjunction, ...]")
    head = item[0]
    if not isinstance(head, str):
        raise _fail(f"{where}[0]", "must be a field name or a conjunction (and, or, not)")
    if head in CONJUNCTIONS:
        operands = item[1:]
        if not operands:
            raise _fail(where, f'"{head}" needs at least one condition')
        if head == "not" and len(operands) != 1:
            raise _fail(where, '"not" takes exactly one condition')
        parsed = tuple(_parse_node(o, f"{where}[{i + 1}]", depth + 1, budget, tz) for i, o in enumerate(operands))
        return Conjunction(head, parsed)
    field = _field(head, f"{where}[0]")
    if len(item) < 2:
        raise _fail(where, "a condition needs an operator: [field, operator, value]")
    op = item[1]
    if not isinstance(op, str) or op not in COMPARISON_OPS + UNARY_OPS:
        raise _fail(f"{where}[1]", f"unknown operator {_show(op)}; expected one of {', '.join(COMPARISON_OPS + UNARY_OPS)}")
    if field.kind == "segment" and op not in SEGMENT_OPS:
        raise _fail(f"{where}[1]", f'"user_segment_id" supports only {", ".join(SEGMENT_OPS)}')
    if op in UNARY_OPS:
        if len(item) != 2:
            raise _fail(where, f'"{op}" takes no value: [field, "{op}"]')
        return Comparison(field, op)
    if len(item) != 3:
        raise _fail(where, f'"{op}" needs exactly one value: [field, "{op}", value]')
    value = _parse_value(field, op, item[2], f"{where}[2]", tz)
    return Comparison(field, op, value)


def _field(name: str, where: str) -> Field:
    if name in FIELDS:
        return FIELDS[name]
    if name.startswith("attributes."):
        path = tuple(name[len("attributes.") :].split("."))
        if any(not part for part in path):
            raise _fail(where, f'attribute path {_show(name)} has an empty segment')
        if any('"' in part or "\\" in part or any(ch < " " for ch in part) for part in path):
            # SQLite's JSON paths cannot spell them (they would match nothing there, on PostgreSQL something)
            raise _fail(where, f'attribute path {_show(name)} may not contain ", \\ or control characters')
        return Field(name, "attribute", path=path)
    raise _fail(where, f"unknown field {_show(name)}")


def _show(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    return repr(value)


def _parse_value(field: Field, op: str, value: Any, where: str, tz: timezone) -> Any:
    if op in ("in", "not in"):
        if not isinstance(value, list) or not value:
            raise _fail(where, f'"{op}" needs a non-empty array of values')
        if len(value) > MAX_IN_VALUES:
            raise _fail(where, f'"{op}" takes at most {MAX_IN_VALUES} values')
        return tuple(_parse_scalar(field, op, v, f"{where}[{i}]", tz) for i, v in enumerate(value))
    return _parse_scalar(field, op, value, where, tz)


def _parse_scalar(field: Field, op: str, value: Any, where: str, tz: timezone) -> Any:
    if isinstance(value, (list, dict)):
        raise _fail(where, "must be a single value (string, number or boolean), not an array or object")
    if value is None:
        raise _fail(where, 'null matches nothing; use "is null" or "is not null"')
    if isinstance(value, float) and not math.isfinite(value):  # JSON has neither; PostgreSQL would compare an infinity as JSON null
        raise _fail(where, "must be a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        raise _fail(where, "number is out of range (64-bit integers)")
    if op in LIKE_OPS:
        if not isinstance(value, str):
            raise _fail(where, f'"{op}" needs a string pattern')
        if _ends_with_lone_escape(value):
            raise _fail(where, "pattern ends with an unescaped \\")
        if field.kind == "time":
            raise _fail(where, f'"{op}" does not apply to timestamp')
        return value
    if field.kind == "time":
        if isinstance(value, bool):
            raise _fail(where, "must be an ISO 8601 string or milliseconds since 1970")
        try:
            return epoch_ms(value, field=where, tz=tz)
        except ApiError as exc:
            raise _fail(where, f"not a valid time: {_show(value)} ({exc.detail})") from exc
    if field.kind == "segment" and not isinstance(value, str):
        raise _fail(where, "segment ids are strings")
    if op in ORDERING_OPS and isinstance(value, bool):
        raise _fail(where, f'"{op}" compares numbers or strings, not booleans')
    return value


def epoch_ms(value: Any, *, field: str, tz: timezone = timezone.utc) -> int:
    """``timestamps.parse_time`` (an ISO 8601 string or epoch ms) within what a 64-bit integer
    holds: a 400 naming ``field`` for anything else, e.g. ``1e300`` or ``-inf``. A fractional
    number of milliseconds is cut to its integer part, as ``parse_time`` does."""
    if isinstance(value, float) and not math.isfinite(value):
        raise bad_request(f"`{field}` must be a finite number of milliseconds since 1970")
    ms = timestamps.parse_time(value, field=field, default_tz=tz)
    if not INT64_MIN <= ms <= INT64_MAX:
        raise bad_request(f"`{field}` is out of range: epoch milliseconds from {INT64_MIN} to {INT64_MAX}")
    return ms


def _ends_with_lone_escape(pattern: str) -> bool:
    run = len(pattern) - len(pattern.rstrip("\\"))
    return run % 2 == 1


# --- compiling -----------------------------------------------------------------------------


def compile_conditions(node: Node, dialect: str, account_id: str) -> ColumnElement[bool]:
    """The WHERE clause (over ``events``) for ``node`` on ``dialect`` ("sqlite" or "postgresql")."""
    compiler = _Compiler(dialect, account_id)
    return compiler.node(node)


class _Compiler:
    def __init__(self, dialect: str, account_id: str):
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported dialect {dialect!r}")
        self.pg = dialect == "postgresql"
        self.account_id = account_id

    def node(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, Conjunction):
            parts = [self.node(o) for o in node.operands]
            if node.kind == "and":
                if not parts:
                    return true()
                return parts[0] if len(parts) == 1 else and_(*parts)
            if node.kind == "or":
                return parts[0] if len(parts) == 1 else or_(*parts)
            # SQL's NOT of an unknown (null) is unknown; the language's `not` is a complement.
            return not_(func.coalesce(parts[0], false(), type_=Boolean))
        return self.comparison(node)

    def comparison(self, c: Comparison) -> ColumnElement[bool]:
        if c.field.kind == "segment":
            return self._segment(c)
        if c.op in NEGATED:
            # "present, and not the positive comparison": negations never match nulls.
            positive = self._positive(c.field, NEGATED[c.op], c.value)
            expr = and_(self._present(c.field), not_(func.coalesce(positive, false(), type_=Boolean)))
        elif c.op == "is null":
            expr = self._absent(c.field)
        elif c.op == "is not null":
            expr = and_(self._present(c.field), self._non_empty(c.field))
        else:
            expr = self._positive(c.field, c.op, c.value)
        if c.field.nps_only:
            if c.op == "is null":
                return or_(not_(self._is_nps()), expr)
            return and_(self._is_nps(), expr)
        return expr

    # -- fields as values ---------------------------------------------------------------

    def _is_nps(self) -> ColumnElement[bool]:
        return self._like(events.c.name, NPS_NAME_PREFIX + "%", case_sensitive=True)

    def _segment(self, c: Comparison) -> ColumnElement[bool]:
        ids = list(c.value) if isinstance(c.value, tuple) else [c.value]
        members = select(segment_members.c.user_id).where(segment_members.c.account_id == self.account_id)
        members = members.where(segment_members.c.segment_id == ids[0]) if len(ids) == 1 else members.where(
            segment_members.c.segment_id.in_(ids)
        )
        if c.op in ("==", "in"):
            return self._user_id_unindexed().in_(members)
        return self._user_id_unindexed().not_in(members)

    def _user_id_unindexed(self):
        """``user_id`` for membership tests. On SQLite it is written ``+user_id``, which keeps
        the planner on the time index: reading ix_events_user_time for a set of users would
        return rows out of time order and need a sort of the whole export (in temporary files)
        before its first row. PostgreSQL sorts within ``work_mem`` and spills to disk."""
        if self.pg:
            return events.c.user_id
        return UnaryExpression(events.c.user_id, operator=operators.custom_op("+"), type_=events.c.user_id.type)

    def _present(self, field: Field) -> ColumnElement[bool]:
        if field.kind in ("column", "time"):
            return true()
        return self._text(field).is_not(None)

    def _absent(self, field: Field) -> ColumnElement[bool]:
        if field.kind in ("column", "time"):
            return false()
        return self._text(field).is_(None)

    def _non_empty(self, field: Field) -> ColumnElement[bool]:
        if field.kind == "time":
            return true()
        if field.kind == "column":
            return events.c[field.column] != ""
        return self._text(field) != ""

    def _text(self, field: Field):
        """The attribute as SQL text/number (null when absent or JSON null)."""
        if self.pg:
            return pg_attribute(field.path, text=True)
        return func.json_extract(events.c.attributes, _sqlite_path(field.path))

    def _json(self, field: Field):
        """PostgreSQL: the attribute as jsonb (type-aware comparisons)."""
        return pg_attribute(field.path)

    def _type_is(self, field: Field, *types: str) -> ColumnElement[bool]:
        """SQLite ``json_type`` names: text, integer, real, true, false, null, object, array."""
        if self.pg:
            pg_names = {"text": "string", "integer": "number", "real": "number", "true": "boolean", "false": "boolean"}
            wanted = sorted({pg_names[t] for t in types})
            typeof = func.jsonb_typeof(self._json(field))
            return typeof == wanted[0] if len(wanted) == 1 else typeof.in_(wanted)
        typeof = func.json_type(events.c.attributes, _sqlite_path(field.path))
        return typeof == types[0] if len(types) == 1 else typeof.in_(types)

    # -- positive comparisons ------------------------------------------------------------

    def _positive(self, field: Field, op: str, value: Any) -> ColumnElement[bool]:
        if op == "in":
            return self._in(field, value)
        if op in ("like", "ilike"):
            return self._like_field(field, value, case_sensitive=op == "like")
        if field.kind == "time":
            return _ordering(events.c.timestamp, "==" if op == "==" else op, value)
        if field.kind == "column":
            column = events.c[field.column]
            if not isinstance(value, str):
                return false()  # a text column never equals or orders with a number/boolean
            if op == "==":
                return column == value
            return _ordering(column.collate("C") if self.pg else column, op, value)
        return self._attribute(field, op, value)

    def _attribute(self, field: Field, op: str, value: Any) -> ColumnElement[bool]:
        if self.pg:
            json_value = literal(value, JSONB)
            if op == "==":
                return self._json(field) == json_value
            if isinstance(value, str):
                return and_(self._type_is(field, "text"), _ordering(self._text(field).collate("C"), op, value))
            return and_(self._type_is(field, "integer"), _ordering(self._json(field), op, json_value))
        extracted = self._text(field)
        if isinstance(value, bool):  # json_extract reads true/false as 1/0: ask json_type
            return self._type_is(field, "true" if value else "false")
        if isinstance(value, str):
            compare = _ordering(extracted, op, value)
            # json_extract gives objects/arrays as JSON text, which a string could spell out;
            # ordering must also skip numbers (SQLite sorts every number before every string).
            if op != "==" or value[:1] in ("[", "{"):
                return and_(self._type_is(field, "text"), compare)
            return compare
        return and_(self._type_is(field, "integer", "real"), _ordering(extracted, op, value))

    def _in(self, field: Field, values: tuple) -> ColumnElement[bool]:
        if field.kind == "time":
            return events.c.timestamp.in_(list(values))
        strings = [v for v in values if isinstance(v, str)]
        if field.kind == "column":
            column = self._user_id_unindexed() if field.column == "user_id" else events.c[field.column]
            return column.in_(strings) if strings else false()
        if self.pg:
            return self._json(field).in_([literal(v, JSONB) for v in values])
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        booleans = [v for v in values if isinstance(v, bool)]
        extracted = self._text(field)
        parts = []
        if strings:
            part = extracted.in_(strings)
            if any(s[:1] in ("[", "{") for s in strings):
                part = and_(self._type_is(field, "text"), part)
            parts.append(part)
        if numbers:
            parts.append(and_(self._type_is(field, "integer", "real"), extracted.in_(numbers)))
        if booleans:
            parts.append(self._type_is(field, *sorted({"true" if b else "false" for b in booleans})))
        return parts[0] if len(parts) == 1 else or_(*parts)

    def _like_field(self, field: Field, pattern: str, *, case_sensitive: bool) -> ColumnElement[bool]:
        if field.kind == "column":
            return self._like(events.c[field.column], pattern, case_sensitive=case_sensitive)
        return and_(self._type_is(field, "text"), self._like(self._text(field), pattern, case_sensitive=case_sensitive))

    def _like(self, expr, pattern: str, *, case_sensitive: bool) -> ColumnElement[bool]:
        if self.pg:
            return expr.like(pattern, escape="\\") if case_sensitive else expr.ilike(pattern, escape="\\")
        if case_sensitive:
            return expr.op("GLOB", is_comparison=True)(like_to_glob(pattern))
        return expr.like(pattern, escape="\\")


def pg_attribute(path: tuple[str, ...], *, text: bool = False):
    """PostgreSQL: the attribute at ``path`` as jsonb (as text with ``text``), one key a step:
    ``attributes -> 'a' -> 'b'``. Not ``#>``, whose path is an array literal that SQLAlchemy
    writes unquoted (a key holding ``,`` was read as two keys, one holding ``"`` or ``{`` failed),
    nor subscripts (``attributes['a']['0']``), which index an array by a numeric key where
    SQLite's paths and the CSV export's columns do not."""
    value = type_coerce(events.c.attributes, JSONB)
    for part in path[:-1]:
        value = value.op("->", return_type=JSONB)(literal(part, Text))
    last = literal(path[-1], Text)
    return value.op("->>", return_type=Text)(last) if text else value.op("->", return_type=JSONB)(last)


def _ordering(expr, op: str, value: Any) -> ColumnElement[bool]:
    if op == "==":
        return expr == value
    if op == "<":
        return expr < value
    if op == "<=":
        return expr <= value
    if op == ">":
        return expr > value
    return expr >= value


def _sqlite_path(path: tuple[str, ...]) -> str:
    """``("a", "b")`` → ``$."a"."b"`` (quoted, so keys with dots-free punctuation work)."""
    return "$" + "".join(f'."{part}"' for part in path)


def like_to_glob(pattern: str) -> str:
    """A LIKE pattern (``%``, ``_``, ``\\`` escapes) as the equivalent case-sensitive GLOB."""
    out = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            ch = next(chars, "\\")
            out.append(_glob_literal(ch))
        elif ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        else:
            out.append(_glob_literal(ch))
    return "".join(out)


def _glob_literal(ch: str) -> str:
    return f"[{ch}]" if ch in "*?[" else ch
