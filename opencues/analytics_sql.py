"""A validated analytics spec (``opencues.analytics.Spec``) compiled to one SQL statement.

Everything is counted inside the database: the statement groups, counts, buckets, zero-fills and
ranks; Python only renders the (at most ``limit``) rows that come back. Time buckets are computed
in Python for the window and sent as a small ``VALUES`` table (``days``: each local day's number
and its day/week/month labels). An event's local day number is integer arithmetic on its
timestamp — plus the zone's offset, a CASE over the DST changes inside the window — so events
join their day by equality: the same SQL on SQLite (which has no time zones) and PostgreSQL,
DST-correct, and the ``days`` table is the source of the zero-filled rows.

Attribute keys are inlined as SQL literals (``opencues.storage.expressions.AttributeText``; they
come from ``analytics_fields``, never from the client). ``flow_id`` is the stored column
``events.flow_id`` (its index ``ix_events_flow_time``, migration 0007), and ``events`` by ``name``
add up the hourly counts of ``event_name_hours`` (``opencues.event_counts``). Values from the
client are bound parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Numeric,
    String,
    Text,
    and_,
    case,
    cast,
    column,
    distinct,
    false,
    func,
    literal_column,
    not_,
    null,
    or_,
    select,
    true,
    text,
    type_coerce,
    union_all,
)
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import ColumnElement

from opencues import analytics
from opencues.analytics import Condition, Renderer, Spec
from opencues.analytics_fields import (
    NPS_BOTH_EVENT,
    NPS_FEEDBACK_EVENT,
    NPS_ROLLING_DAYS,
    NPS_SCORE_EVENTS,
    NPS_STARTED_EVENT,
    DIMENSIONS,
    Dimension,
)
from opencues.conditions import like_to_glob
from opencues.event_counts import HOUR_MS
from opencues.storage.expressions import AttributeText
from opencues.storage.schema import event_name_hours, events, profiles, segment_members



@dataclass
class Compiled:
    statement: Any
    outputs: list[tuple[str, Callable[[Any], Any]]]

    def render(self, row) -> dict:
        return {key: convert(value) for (key, convert), value in zip(self.outputs, row)}


def compile_query(db, account_id: str, spec: Spec, *, limit: int | None) -> Compiled:
    return _Compiler(db, account_id, spec).compile(limit)


_EPOCH_SHIFT_DAYS = 200_000  # ~547 years: local day numbers stay right for events back to 1423

# Raw columns whose JSON the database can write itself (``compile_json_rows``).
_SQL_RENDERED = ("column", "attribute", "event_group", "constant", "null")


def compile_json_rows(db, account_id: str, spec: Spec, *, limit: int | None):
    """For an export of raw rows: a statement whose one column is each row as JSON text, built by
    the database (``json_object`` / ``json_build_object``, times by ``strftime`` / ``to_char``),
    so an export of millions of rows does no per-row Python; or None when a column needs Python
    (JSON objects, buckets, profile data)."""
    if not _sql_renders(spec):
        return None
    return _Compiler(db, account_id, spec).json_rows(limit)


def compile_json_windows(db, account_id: str, spec: Spec):
    """``compile_json_rows`` cut into time windows of the export order (``_Compiler.json_windows``),
    for helpers that render them in parallel; None when a column needs Python."""
    if not _sql_renders(spec):
        return None
    return _Compiler(db, account_id, spec).json_windows(db)


def _sql_renders(spec: Spec) -> bool:
    return spec.raw and all(s.dim.source in _SQL_RENDERED and not s.dim.json for s in spec.columns)


def _sql_literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    if not re.fullmatch(r"[0-9-]+", value):  # only day numbers and ISO dates are ever inlined
        raise ValueError(value)
    return f"'{value}'"


def _days_table(rows: list[tuple], names: list[str], name: str):
    """The window's days as an inline ``VALUES`` list of literals (day numbers and ISO dates that
    opencues computed, never client text): one small text for the compiler instead of a bound
    parameter per cell, which made compiling a 90-day query cost more than running it."""
    cells = ", ".join("(" + ", ".join(_sql_literal(v) for v in row) + ")" for row in rows)
    picks = ", ".join(f"column{i + 1} AS {n}" for i, n in enumerate(names))
    types = [column(n, BigInteger if i == 0 else String) for i, n in enumerate(names)]
    return text(f"SELECT {picks} FROM (VALUES {cells}) AS v").columns(*types).cte(name)


def _not_null(ordering) -> bool:
    element = ordering.element
    return isinstance(element, Column) and element.table is events and not element.nullable


def _suffix(offset_ms: int) -> ColumnElement:
    minutes = offset_ms // 60_000
    if minutes == 0:
        return literal_column("'Z'")
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return literal_column(f"'{sign}{hours:02d}:{rest:02d}'")


def _metric_value(value: Any) -> Any:
    if value is None:
        return None
    return int(value)


class _Compiler:
    def __init__(self, db, account_id: str, spec: Spec):
        self.pg = db.is_postgres
        self.account_id = account_id
        self.spec = spec
        self.renderer = Renderer(spec.tz)
        self.profile_values = None  # the table-valued function exploding profile attributes

    # -- reading values ------------------------------------------------------------------

    def _json_text(self, document, path: tuple[str, ...]) -> ColumnElement:
        """A JSON path of ``document`` as SQL text (numbers as numbers on SQLite), null when absent."""
        if not path:
            return document
        if len(path) == 1:
            return AttributeText(document, path[0])
        if self.pg:
            key = "'" + path[0] + "'" if len(path) == 1 else "'{" + ",".join(path) + "}'"
            return document.op("->>" if len(path) == 1 else "#>>")(literal_column(key))
        return func.json_extract(document, literal_column("'$." + ".".join(path) + "'"))

    def raw(self, dim: Dimension) -> ColumnElement:
        """The dimension's value for an event row, null when the event lacks it."""
        if dim.source == "column":
            if dim.json:  # the JSON text, as attribute objects are read
                return cast(events.c[dim.target], Text) if self.pg else type_coerce(events.c[dim.target], Text)
            return events.c[dim.target]
        if dim.source == "event_group":
            return func.coalesce(events.c.group_id, self._json_text(events.c.attributes, ("groupId",)))
        if dim.source == "attribute":
            value = self._json_text(events.c.attributes, dim.target)
            if dim.only_on:
                return case((events.c.name.in_(dim.only_on), value), else_=null())
            return value
        if dim.source == "constant":
            return literal_column(f"'{dim.target}'", String)
        if dim.source == "null":
            return literal_column("''", String)
        if dim.source == "segment":
            return segment_members.c.segment_id
        if dim.source == "profile":
            return self._json_text(profiles.c.attributes, (dim.target,))
        if dim.source == "profile_updated":
            return profiles.c.updated_at
        if dim.source == "profile_group":
            return profiles.c.group_id
        if dim.source in ("profile_key", "profile_value"):
            return self._profile_values().c["key" if dim.source == "profile_key" else "value"]
        raise AssertionError(dim)

    def _profile_values(self):
        if self.profile_values is None:
            if self.pg:
                self.profile_values = func.jsonb_each_text(profiles.c.attributes).table_valued("key", "value").lateral("pa")
            else:
                self.profile_values = func.json_each(profiles.c.attributes).table_valued("key", "value").alias("pa")
        return self.profile_values

    @staticmethod
    def _is_instant(dim: Dimension) -> bool:
        return dim.name == "timestamp" or dim.source == "profile_updated"

    def grouped(self, dim: Dimension) -> ColumnElement:
        """The value to group by: ``""`` for an event that lacks it (spec §9.4)."""
        value = self.raw(dim)
        if self._is_instant(dim) or dim.source in ("constant", "null"):
            return value
        value = func.coalesce(value, literal_column("''", String))
        # Text, in byte order, on both databases: PostgreSQL would otherwise sort by its locale,
        # SQLite put JSON numbers (json_extract gives them as numbers) before every string.
        return value.collate("C") if self.pg else cast(value, String)

    def converter(self, dim: Dimension, *, raw_column: bool = False) -> Callable[[Any], Any]:
        if self._is_instant(dim):
            return self.renderer.instant
        if raw_column and dim.json:
            return lambda v: Renderer.json_value(v) if v is not None else None
        if dim.json:  # one spelling of an object on both databases (PostgreSQL's jsonb text has spaces)
            return lambda v: Renderer.text(Renderer.json_value(v)) if v else ""
        return Renderer.text

    # -- the FROM clause and the WHERE clause --------------------------------------------

    def _needs(self, selected_dims) -> tuple[bool, bool, bool]:
        dims = list(selected_dims) + [c.dim for c in self.spec.conditions if c.dim.source != "segment"]
        profile = any(d.needs_profile for d in dims)
        segments = any(d.source == "segment" for d in selected_dims)
        exploded = any(d.source in ("profile_key", "profile_value") for d in selected_dims)
        return profile, segments, exploded

    def source(self, selected_dims):
        """events and the tables the dimensions read."""
        profile, segments, exploded = self._needs(selected_dims)
        src = events
        if segments:
            src = src.outerjoin(segment_members, and_(
                segment_members.c.account_id == events.c.account_id, segment_members.c.user_id == events.c.user_id))  # fmt: skip
        if profile:
            src = src.outerjoin(profiles, and_(
                profiles.c.account_id == events.c.account_id, profiles.c.user_id == events.c.user_id))  # fmt: skip
        if exploded:
            src = src.outerjoin(self._profile_values(), true())
        return src

    def where(self, start_ms: int | None = None) -> list[ColumnElement]:
        spec = self.spec
        clauses = [
            events.c.account_id == self.account_id,
            events.c.timestamp >= (spec.start_ms if start_ms is None else start_ms),
            events.c.timestamp < spec.end_ms,
        ]
        clauses += [self.condition(c) for c in spec.conditions]
        return clauses

    def _bind(self, value: Any) -> Any:
        """A condition value as the raw expression holds it: text on PostgreSQL (``->>``), the
        JSON scalar on SQLite (``json_extract``)."""
        if self.pg:
            return Renderer.text(value)
        if isinstance(value, bool):
            return 1 if value else 0
        return value

    def _false_if_null(self, expr: ColumnElement) -> ColumnElement:
        return func.coalesce(expr, false())

    def _positive(self, value_expr: ColumnElement, op: str, value: Any, *, stored_text: bool = False) -> ColumnElement:
        """``==``/``in``/``like``/``ilike`` over a dimension's value, where absent reads ``""``
        (``stored_text``: a text column, compared with the values' text on both databases)."""
        if op in ("like", "ilike"):
            text = func.coalesce(value_expr, literal_column("''", String))
            if self.pg:
                return text.like(value, escape="\\") if op == "like" else text.ilike(value, escape="\\")
            if op == "like":
                return text.op("GLOB", is_comparison=True)(like_to_glob(value))
            return text.like(value, escape="\\")
        wanted = list(value) if op == "in" else [value]
        empty = any(v is None or v == "" for v in wanted)
        bind = Renderer.text if stored_text else self._bind
        present = [bind(v) for v in wanted if not (v is None or v == "")]
        parts = []
        if present:
            parts.append(value_expr == present[0] if len(present) == 1 else value_expr.in_(present))
        if empty:
            parts.append(or_(value_expr.is_(None), value_expr == ""))
        return parts[0] if len(parts) == 1 else or_(*parts)

    def condition(self, c: Condition) -> ColumnElement:
        positive_op = {"!=": "==", "not in": "in", "not like": "like", "not ilike": "ilike"}.get(c.op, c.op)
        negated = positive_op != c.op
        if c.dim.source == "segment":
            if positive_op in ("==", "in") and all(v in (None, "") for v in (c.value if isinstance(c.value, tuple) else (c.value,))):
                # "no segment": users who are members of none
                members = select(segment_members.c.user_id).where(segment_members.c.account_id == self.account_id)
                inside = events.c.user_id.in_(members)
                return inside if negated else not_(inside)
            members = select(segment_members.c.user_id).where(
                segment_members.c.account_id == self.account_id,
                self._positive(segment_members.c.segment_id, positive_op, c.value),
            )
            inside = events.c.user_id.in_(members)
            return not_(inside) if negated else inside
        positive = self._positive(self.raw(c.dim), positive_op, c.value, stored_text=c.dim.source == "column")
        return not_(self._false_if_null(positive)) if negated else positive

    # -- time buckets --------------------------------------------------------------------

    @staticmethod
    def local_day(days: analytics.LocalDays) -> ColumnElement:
        """The event's local day number: ``(timestamp + offset) / 86400000`` in integer arithmetic,
        the offset a constant or a CASE over the window's DST changes."""
        ts = events.c.timestamp
        offsets = days.offsets
        if len(offsets) == 1:
            shift = literal_column(str(offsets[0][1]))
        else:
            whens = [(ts < literal_column(str(changes_at)), literal_column(str(previous[1])))
                     for previous, (changes_at, _) in zip(offsets, offsets[1:])]  # fmt: skip
            shift = case(*whens, else_=literal_column(str(offsets[-1][1])))
        # Shifted by _EPOCH_SHIFT_DAYS first: integer division truncates toward zero, and an event
        # before 1970 must still fall on the day below it.
        shifted = (ts + shift + literal_column(str(_EPOCH_SHIFT_DAYS * analytics.DAY_MS))).self_group()
        return shifted.op("/")(literal_column(str(analytics.DAY_MS))) - literal_column(str(_EPOCH_SHIFT_DAYS))

    # -- metrics -------------------------------------------------------------------------

    def metric(self, name: str) -> ColumnElement:
        if name == "events":
            return func.count()
        if name == "users":
            return func.count(distinct(events.c.user_id))
        if name == "sessions":
            return func.count(distinct(self._json_text(events.c.attributes, ("_sessionId",))))
        if name == "groups":
            return func.count(distinct(self.raw(DIMENSIONS["group_id"])))
        raise AssertionError(name)

    # -- statements ----------------------------------------------------------------------

    def compile(self, limit: int | None) -> Compiled:
        if self.spec.raw:
            return self._raw(limit)
        if self.spec.nps:
            return self._nps(limit)
        return self._aggregate(limit)

    def _finish(self, query, columns: dict[str, ColumnElement], default_order: list, limit: int | None):
        order = [columns[k].desc() if desc else columns[k].asc() for k, desc in self.spec.order_by] or default_order
        if self.pg:  # nulls sort lowest, as on SQLite (not said of NOT NULL columns: their index order serves)
            order = [o if _not_null(o) else o.nulls_last() if o.modifier is operators.desc_op else o.nulls_first() for o in order]
        query = query.order_by(*order)
        if limit is not None:
            query = query.limit(limit)
        if self.spec.offset:
            query = query.offset(self.spec.offset)
        return query

    def _raw(self, limit: int | None) -> Compiled:
        spec = self.spec
        exprs, outputs = [], []
        for s in spec.columns:
            if s.dim.source == "bucket":
                exprs.append(events.c.timestamp)
                unit = s.dim.target
                outputs.append((s.key, lambda ms, unit=unit: self.renderer.bucket_of(ms, unit)))
            else:
                value = self.raw(s.dim)
                if self.pg and not self._is_instant(s.dim) and not s.dim.json and s.dim.source not in ("constant", "null"):
                    value = value.collate("C")
                exprs.append(value)
                outputs.append((s.key, self.converter(s.dim, raw_column=True)))
        columns = {s.key: e for s, e in zip(spec.columns, exprs)}
        query = select(*exprs).select_from(self.source([s.dim for s in spec.columns])).where(*self.where())
        statement = self._finish(query, columns, [events.c.timestamp.asc(), events.c.id.asc()], limit)
        return Compiled(statement, outputs)

    def _iso_time(self) -> ColumnElement:
        """``events.timestamp`` as ISO 8601 with milliseconds in the query's zone, by the database."""
        local = analytics.local_days(self.spec.start_ms, self.spec.end_ms, [], self.spec.tz)
        ts = events.c.timestamp
        if self.pg:
            def shown(offset: int):
                moment = literal_column("timestamp '1970-01-01'") + (ts + offset) * literal_column("interval '1 millisecond'")
                return func.to_char(moment, literal_column("'YYYY-MM-DD\"T\"HH24:MI:SS.MS'")).concat(_suffix(offset))
        else:
            def shown(offset: int):
                seconds = (ts + offset) / literal_column("1000.0")
                return func.strftime(literal_column("'%Y-%m-%dT%H:%M:%f'"), seconds, literal_column("'unixepoch'")).concat(_suffix(offset))
        offsets = local.offsets
        if len(offsets) == 1:
            return shown(offsets[0][1])
        whens = [(ts < changes_at, shown(previous[1])) for previous, (changes_at, _) in zip(offsets, offsets[1:])]
        return case(*whens, else_=shown(offsets[-1][1]))

    def json_document(self) -> tuple[ColumnElement, dict[str, ColumnElement]]:
        """Each row as JSON text built by the database, and the columns ``order_by`` may name."""
        pairs, columns, values = [], {}, []
        for s in self.spec.columns:
            if s.dim.name == "timestamp":
                value = self._iso_time()
                columns[s.key] = events.c.timestamp
            else:
                value = self.raw(s.dim)
                if s.dim.source in ("attribute", "event_group") or (s.dim.source == "column" and events.c[s.dim.target].nullable):
                    value = func.coalesce(value if self.pg else cast(value, String), literal_column("''"))
                columns[s.key] = value.collate("C") if self.pg and s.dim.source == "column" else value
            pairs += [literal_column("'" + s.key + "'"), value]
            values.append((s.key, value))
        if not self.pg:
            return func.json_object(*pairs), columns
        # Concatenated pieces, each value through to_json: PostgreSQL builds this text ~30%
        # faster than json_build_object(...)::text (keys are dimension names: no quoting).
        document = None
        for i, (key, value) in enumerate(values):
            piece = literal_column(f"""'{"{" if i == 0 else ","}"{key}":'""", String).concat(
                func.coalesce(cast(func.to_json(cast(value, Text)), Text), literal_column("'null'")))
            document = piece if document is None else document.concat(piece)
        return document.concat(literal_column("'}'")), columns

    def json_rows(self, limit: int | None):
        document, columns = self.json_document()
        query = select(document).select_from(events).where(*self.where())
        return self._finish(query, columns, [events.c.timestamp.asc(), events.c.id.asc()], limit)

    def json_windows(self, db):
        """One time window of the export order as one row (``exports.window_aggregate``), each
        row's JSON after a comma, for ``opencues.export_windows``."""
        from opencues import exports

        document, _columns = self.json_document()
        line = literal_column("','", String).concat(document).label("line")
        return exports.window_aggregate(db, exports.window_rows([events.c.id, line], before=self.where()))

    def _aggregate(self, limit: int | None) -> Compiled:
        spec = self.spec
        times = [s for s in spec.dimensions if s.dim.source == "bucket"]
        others = [s for s in spec.dimensions if s.dim.source != "bucket"]
        if self._counts_by_name_eligible(times, others):
            return self._counts_by_name(others[0], limit)
        other_dims = [s.dim for s in others]
        metrics = [self.metric(m).label(f"m{i}") for i, m in enumerate(spec.metrics)]
        dim_values = [self.grouped(s.dim).label(f"d{i}") for i, s in enumerate(others)]
        # Constants are not grouped by (PostgreSQL refuses a literal in GROUP BY).
        group_keys = [v for v, s in zip(dim_values, others) if s.dim.source not in ("constant", "null")]
        where = self.where()
        rank = spec.rank
        ranked = None
        if rank is not None:
            ranked_value = self.grouped(rank.dim)
            if not times and len(others) == 1:
                # The ranked dimension is the only one: the ranking *is* the answer.
                top = (
                    select(*dim_values, *metrics).select_from(self.source(other_dims)).where(*where)
                    .group_by(*group_keys)
                    .order_by(metrics[0].desc() if rank.top else metrics[0].asc(), dim_values[0].asc())
                    .limit(rank.n)
                ).subquery("ranked")  # fmt: skip
                columns = {others[0].key: top.c.d0, **{m: top.c[f"m{i}"] for i, m in enumerate(spec.metrics)}}
                default = [top.c.m0.desc() if rank.top else top.c.m0.asc(), top.c.d0.asc()]
                statement = self._finish(select(*top.c), columns, default, limit)
                return Compiled(statement, self._outputs(others))
            ranked = (
                select(ranked_value.label("r"), self.metric(spec.metrics[0]).label("rm"))
                .select_from(self.source([rank.dim])).where(*where)
                .group_by(*([ranked_value] if rank.dim.source not in ("constant", "null") else []))
                .order_by(literal_column("rm").desc() if rank.top else literal_column("rm").asc(), ranked_value.asc())
                .limit(rank.n)
            ).cte("ranked")  # fmt: skip
            where = where + [ranked_value.in_(select(ranked.c.r))]
        if not times:
            grouped = select(*dim_values, *metrics).select_from(self.source(other_dims)).where(*where)
            if group_keys:
                grouped = grouped.group_by(*group_keys)
            g = grouped.subquery("g")
            columns = {s.key: g.c[f"d{i}"] for i, s in enumerate(others)}
            columns.update({m: g.c[f"m{i}"] for i, m in enumerate(spec.metrics)})
            query = select(*[columns[s.key] for s in spec.dimensions], *[columns[m] for m in spec.metrics])
            default = [columns[s.key].asc() for s in spec.dimensions]
            if ranked is not None:
                rank_col = columns[rank.key]
                query = query.select_from(g.join(ranked, ranked.c.r == rank_col))
                default = [ranked.c.rm.desc() if rank.top else ranked.c.rm.asc(), *default]
            statement = self._finish(query, columns, default, limit)
            return Compiled(statement, self._outputs(spec.dimensions))
        units = [s.dim.target for s in times]
        local = analytics.local_days(spec.start_ms, spec.end_ms, units, spec.tz)
        days = _days_table(local.rows, ["ld", *[f"t_{u}" for u in units]], "days")
        labels = [days.c[f"t_{u}"].label(f"t_{u}") for u in units]
        if "day" in units:
            # Each local day is one bucket combination: group the events by their day number, then
            # label the few groups — no join per event (PostgreSQL: ~30 % of query 1's time).
            day = self.local_day(local).label("ld")
            by_day = (
                select(day, *dim_values, *metrics).select_from(self.source(other_dims)).where(*where)
                .group_by(day, *group_keys)
            ).cte("by_day").prefix_with("MATERIALIZED")  # fmt: skip
            g = (
                select(*labels, *[by_day.c[f"d{i}"] for i in range(len(others))],
                       *[by_day.c[f"m{i}"] for i in range(len(spec.metrics))])
                .select_from(by_day.join(days, days.c.ld == by_day.c.ld))
            ).cte("g")  # fmt: skip
        else:
            # events first: each event finds its bucket by day number (an equality join on a small table).
            src = self.source(other_dims).join(days, days.c.ld == self.local_day(local))
            g = (
                select(*labels, *dim_values, *metrics).select_from(src).where(*where)
                .group_by(*labels, *group_keys)
            ).cte("g").prefix_with("MATERIALIZED")  # fmt: skip
        # MATERIALIZED: computed once. Otherwise SQLite pushes the outer join's `t_day = …` into g
        # and runs the whole aggregate once per bucket (measured 30x slower for 30 days).
        shown = select(*[days.c[f"t_{u}"] for u in units]).distinct().cte("shown")
        on = [g.c[f"t_{u}"] == shown.c[f"t_{u}"] for u in units]
        if others:
            combos = select(*[g.c[f"d{i}"] for i in range(len(others))]).distinct().cte("combos")
            on += [g.c[f"d{i}"] == combos.c[f"d{i}"] for i in range(len(others))]
            src = shown.join(combos, true()).outerjoin(g, and_(*on))
            columns = {s.key: combos.c[f"d{i}"] for i, s in enumerate(others)}
        else:
            src = shown.outerjoin(g, and_(*on))
            columns = {}
        columns.update({s.key: shown.c[f"t_{s.dim.target}"] for s in times})
        columns.update({m: func.coalesce(g.c[f"m{i}"], 0) for i, m in enumerate(spec.metrics)})
        query = select(*[columns[s.key] for s in spec.dimensions], *[columns[m] for m in spec.metrics]).select_from(src)
        default = [columns[s.key].asc() for s in spec.dimensions]
        if ranked is not None:
            query = query.select_from(src.join(ranked, ranked.c.r == columns[rank.key]))
            default = [ranked.c.rm.desc() if rank.top else ranked.c.rm.asc(), *default]
        statement = self._finish(query, columns, default, limit)
        return Compiled(statement, self._outputs(spec.dimensions))

    def _counts_by_name_eligible(self, times, others) -> bool:
        """``events`` by ``name`` alone, with conditions on the name only: what the hourly counts
        (``event_name_hours``) can answer."""
        by_name = lambda d: d.source == "column" and d.target == "name"  # noqa: E731
        return (not times and len(others) == 1 and by_name(others[0].dim) and self.spec.metrics == ["events"]
                and all(by_name(c.dim) or c.dim.source in ("constant", "null") for c in self.spec.conditions))  # fmt: skip

    def _counts_by_name(self, selected, limit: int | None) -> Compiled:
        """``events`` by ``name`` from the exact hourly counts (``opencues.event_counts``): the
        window's whole UTC hours add up their counts (a few thousand rows for 90 days), and only
        the events of the partial hours at its two ends are counted, through ``ix_events_time``.
        Counting the window's events instead reads every one of them (seconds at 10M events)."""
        spec = self.spec
        first_hour = -(-spec.start_ms // HOUR_MS)  # the whole hours inside the window: [first, last)
        last_hour = spec.end_ms // HOUR_MS

        def name_conditions(name_column):
            swap = {id(events.c.name): name_column}
            return [visitors.replacement_traverse(self.condition(c), {}, lambda e: swap.get(id(e))) for c in spec.conditions]

        def counted(start_ms: int, end_ms: int):
            return (
                select(events.c.name.label("n"), func.count().label("c"))
                .where(events.c.account_id == self.account_id, events.c.timestamp >= start_ms, events.c.timestamp < end_ms,
                       *name_conditions(events.c.name))
                .group_by(events.c.name)
            )  # fmt: skip

        if first_hour < last_hour:
            parts = [
                select(event_name_hours.c.name.label("n"), event_name_hours.c.events.label("c")).where(
                    event_name_hours.c.account_id == self.account_id,
                    event_name_hours.c.hour >= first_hour, event_name_hours.c.hour < last_hour,
                    *name_conditions(event_name_hours.c.name),
                )  # fmt: skip
            ]
            if spec.start_ms < first_hour * HOUR_MS:
                parts.append(counted(spec.start_ms, first_hour * HOUR_MS))
            if last_hour * HOUR_MS < spec.end_ms:
                parts.append(counted(last_hour * HOUR_MS, spec.end_ms))
        else:
            parts = [counted(spec.start_ms, spec.end_ms)]
        pieces = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery("pieces")
        name_value = pieces.c.n.collate("C") if self.pg else pieces.c.n
        per_name = (
            select(name_value.label("d0"), func.sum(pieces.c.c).label("m0")).group_by(pieces.c.n)
        ).cte("per_name").prefix_with("MATERIALIZED")  # fmt: skip
        query = select(per_name.c.d0, per_name.c.m0).where(per_name.c.m0 > 0)
        columns = {selected.key: per_name.c.d0, "events": per_name.c.m0}
        rank = spec.rank
        if rank is not None:
            top = (query.order_by(per_name.c.m0.desc() if rank.top else per_name.c.m0.asc(), per_name.c.d0.asc())
                   .limit(rank.n).subquery("ranked"))  # fmt: skip
            columns = {selected.key: top.c.d0, "events": top.c.m0}
            default = [top.c.m0.desc() if rank.top else top.c.m0.asc(), top.c.d0.asc()]
            statement = self._finish(select(top.c.d0, top.c.m0), columns, default, limit)
        else:
            statement = self._finish(query, columns, [per_name.c.d0.asc()], limit)
        return Compiled(statement, self._outputs([selected]))

    def _outputs(self, dims) -> list[tuple[str, Callable]]:
        outputs = [(s.key, self.converter(s.dim)) for s in dims]
        outputs += [(m, _metric_value) for m in self.spec.metrics]
        return outputs

    # -- NPS -----------------------------------------------------------------------------

    def _score(self) -> ColumnElement:
        """The event's numeric ``score`` (null unless a JSON number)."""
        if self.pg:
            return case(
                (func.jsonb_typeof(events.c.attributes.op("->")(literal_column("'score'"))) == "number",
                 cast(events.c.attributes.op("->>")(literal_column("'score'")), Numeric)),
                else_=null(),
            )  # fmt: skip
        return case(
            (func.json_type(events.c.attributes, literal_column("'$.score'")).in_(["integer", "real"]),
             func.json_extract(events.c.attributes, literal_column("'$.score'"))),
            else_=null(),
        )  # fmt: skip

    def _has_feedback(self) -> ColumnElement:
        if self.pg:
            text_value = events.c.attributes.op("->>")(literal_column("'feedback'"))
            kind = func.jsonb_typeof(events.c.attributes.op("->")(literal_column("'feedback'")))
        else:
            text_value = func.json_extract(events.c.attributes, literal_column("'$.feedback'"))
            kind = func.json_type(events.c.attributes, literal_column("'$.feedback'"))
        return and_(kind == (("string" if self.pg else "text")), text_value != "")

    def _nps(self, limit: int | None) -> Compiled:
        """Rolling 30-day NPS figures per local day (``docs/analytics.md`` defines them).

        Each user's latest score of each day covers the days from that day until the user's
        next scoring day (exclusive), at most 30 days: the coverage is summed per day as +1/−1
        deltas and a running total, so the work is linear in the survey's events."""
        spec = self.spec
        local = analytics.local_days(spec.start_ms, spec.end_ms, ["day"], spec.tz, lookback_days=NPS_ROLLING_DAYS - 1)
        first_shown = local.rows[NPS_ROLLING_DAYS - 1][0]
        # Lookback days carry no label: read, not shown.
        days_rows = [(ld, label if ld >= first_shown else None) for ld, label in local.rows]
        days = _days_table(days_rows, ["idx", "label"], "days")
        score = self._score()
        valid_score = and_(events.c.name.in_(NPS_SCORE_EVENTS), score >= 0, score <= 10)
        one, zero = literal_column("1"), literal_column("0")
        seen = (
            select(
                self.local_day(local).label("idx"), events.c.user_id, events.c.timestamp, events.c.id, score.label("score"),
                case((valid_score, 1), else_=0).label("is_score"),
                case((events.c.name == NPS_STARTED_EVENT, 1), else_=0).label("is_started"),
                case((or_(events.c.name == NPS_FEEDBACK_EVENT, and_(events.c.name == NPS_BOTH_EVENT, self._has_feedback())), 1), else_=0).label("is_feedback"),
            )
            .where(*self.where(start_ms=local.offsets[0][0]))
        ).cte("seen").prefix_with("MATERIALIZED")  # fmt: skip
        counts = (
            select(seen.c.idx, func.sum(seen.c.is_started).label("started"), func.sum(seen.c.is_score).label("scores"),
                   func.sum(seen.c.is_feedback).label("feedbacks"))
            .group_by(seen.c.idx)
        ).cte("counts")  # fmt: skip
        latest_of_day = (
            select(seen.c.idx, seen.c.user_id, seen.c.score,
                   func.row_number().over(partition_by=[seen.c.user_id, seen.c.idx],
                                          order_by=[seen.c.timestamp.desc(), seen.c.id.desc()]).label("rn"))
            .where(seen.c.is_score == 1)
        ).subquery("latest_of_day")  # fmt: skip
        daily = select(
            latest_of_day.c.idx, latest_of_day.c.score,
            func.lead(latest_of_day.c.idx).over(partition_by=latest_of_day.c.user_id, order_by=latest_of_day.c.idx).label("next_idx"),
        ).where(latest_of_day.c.rn == 1).cte("daily").prefix_with("MATERIALIZED")  # fmt: skip
        last_covered = daily.c.idx + (NPS_ROLLING_DAYS - 1)
        until = case((and_(daily.c.next_idx.is_not(None), daily.c.next_idx - 1 < last_covered), daily.c.next_idx - 1), else_=last_covered)
        promoter = case((daily.c.score >= 9, one), else_=zero)
        neutral = case((and_(daily.c.score >= 7, daily.c.score < 9), one), else_=zero)
        detractor = case((daily.c.score < 7, one), else_=zero)
        starts = select(daily.c.idx.label("at"), promoter.label("p"), neutral.label("n"), detractor.label("d"))
        ends = select((until + 1).label("at"), (-promoter).label("p"), (-neutral).label("n"), (-detractor).label("d"))
        spans = union_all(starts, ends).subquery("spans")
        deltas = (
            select(spans.c.at, func.sum(spans.c.p).label("p"), func.sum(spans.c.n).label("n"), func.sum(spans.c.d).label("d"))
            .group_by(spans.c.at)
        ).cte("deltas")  # fmt: skip
        running = {"order_by": days.c.idx, "rows": (None, 0)}
        rolling = {"order_by": days.c.idx, "rows": (-(NPS_ROLLING_DAYS - 1), 0)}
        per_day = (
            select(
                days.c.idx, days.c.label,
                func.sum(func.coalesce(deltas.c.p, 0)).over(**running).label("p"),
                func.sum(func.coalesce(deltas.c.n, 0)).over(**running).label("n"),
                func.sum(func.coalesce(deltas.c.d, 0)).over(**running).label("d"),
                func.sum(func.coalesce(counts.c.started, 0)).over(**rolling).label("started"),
                func.sum(func.coalesce(counts.c.scores, 0)).over(**rolling).label("scores"),
                func.sum(func.coalesce(counts.c.feedbacks, 0)).over(**rolling).label("feedbacks"),
            )
            .select_from(days.outerjoin(deltas, deltas.c.at == days.c.idx).outerjoin(counts, counts.c.idx == days.c.idx))
        ).subquery("per_day")  # fmt: skip
        respondents = per_day.c.p + per_day.c.n + per_day.c.d
        figures = {
            "nps_promoters": per_day.c.p,
            "nps_neutrals": per_day.c.n,
            "nps_detractors": per_day.c.d,
            "nps_respondents": respondents,
            "nps_survey_started": per_day.c.started,
            "nps_scores_submitted": per_day.c.scores,
            "nps_feedbacks_submitted": per_day.c.feedbacks,
            "nps_computed_score": case(
                (respondents > 0, func.round(cast(100 * (per_day.c.p - per_day.c.d), Numeric) / respondents)), else_=null()
            ),
        }
        columns = {"day": per_day.c.label, **{m: figures[m] for m in spec.metrics}}
        query = select(per_day.c.label, *[figures[m] for m in spec.metrics]).where(per_day.c.label.is_not(None))
        statement = self._finish(query, columns, [per_day.c.idx.asc()], limit)
        outputs = [("day", Renderer.text)] + [(m, _metric_value) for m in spec.metrics]
        return Compiled(statement, outputs)
