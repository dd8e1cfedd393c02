"""The analytics API (spec §9): a query spec validated, compiled to one SQL statement and run —
synchronously (``run_query``, at most ``SYNC_ROW_CAP`` rows) or as an export job that streams every
row into a JSON file (``run_export_job``).

Library use::

    spec = analytics.parse_spec(body)              # 400 naming the field on bad input
    result = analytics.run_query(db, account_id, spec)
    result.rows, result.truncated                  # list of dicts; True when clamped at 1000

The SQL lives in ``opencues.analytics_sql``; the names (metrics, dimensions and where each is
stored) in ``opencues.analytics_fields``; ``docs/analytics.md`` explains the semantics.
"""

from __future__ import annotations

import math
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from opencues import timestamps
from opencues.analytics_fields import (
    COUNT_METRICS,
    DIMENSIONS,
    METRICS,
    NPS_METRICS,
    Dimension,
)
from opencues.errors import ApiError, bad_request

SYNC_ROW_CAP = 1000  # rows a synchronous query returns at most (X-Rows-Truncated beyond)
SYNC_MAX_DAYS = 90  # the longest window a synchronous query may span
OPERATORS = ("==", "!=", "in", "not in", "like", "ilike", "not like", "not ilike")
LIST_OPERATORS = ("in", "not in")
LIKE_OPERATORS = ("like", "ilike", "not like", "not ilike")
DAY_MS = 86_400_000
# The window must lie within these (UTC): bounds the days a bucketed export can span.
EARLIEST_MS = -2_208_988_800_000  # 1900-01-01
LATEST_MS = 7_258_118_400_000  # 2200-01-01
MAX_IN_VALUES = 10_000


@dataclass(frozen=True)
class Selected:
    """A dimension or column as the spec spells it (``key``, the row key) and what it reads."""

    key: str
    dim: Dimension


@dataclass(frozen=True)
class Condition:
    key: str
    dim: Dimension
    op: str
    value: Any  # a scalar, or a tuple for in / not in


@dataclass(frozen=True)
class Rank:
    n: int
    top: bool
    key: str
    dim: Dimension


@dataclass
class Spec:
    """A validated query spec. Instants are epoch ms; ``tz`` the zone of buckets and renderings."""

    metrics: list[str]
    dimensions: list[Selected]
    columns: list[Selected]
    conditions: list[Condition]
    order_by: list[tuple[str, bool]]  # (row key, descending)
    rank: Rank | None
    start_ms: int
    end_ms: int
    tz_name: str
    limit: int | None
    offset: int
    tz: Any = field(repr=False, default=None)

    @property
    def raw(self) -> bool:
        return bool(self.columns)

    @property
    def nps(self) -> bool:
        return any(m in NPS_METRICS for m in self.metrics)

    @property
    def time_dimensions(self) -> list[Selected]:
        return [s for s in self.dimensions if s.dim.source == "bucket"]

    @property
    def flow_ids(self) -> tuple[str, ...]:
        """The NPS survey ids: the values of the ``flow_id`` ``==``/``in`` conditions."""
        for c in self.conditions:
            if c.dim.name == "flow_id" and c.op in ("==", "in"):
                return c.value if isinstance(c.value, tuple) else (c.value,)
        return ()

    def to_params(self) -> dict:
        """The spec as stored in an export job's params (parsed again by the worker)."""
        return {
            "metrics": self.metrics or None,
            "columns": [s.key for s in self.columns] or None,
            "dimensions": [s.key for s in self.dimensions],
            "conditions": [[c.key, c.op, list(c.value) if isinstance(c.value, tuple) else c.value] for c in self.conditions],
            "order_by": [[k, "desc" if d else "asc"] for k, d in self.order_by],
            "rank_n": {"n": self.rank.n, "direction": "top" if self.rank.top else "bottom", "dimension": self.rank.key} if self.rank else None,
            "start_time": timestamps.render(self.start_ms),
            "end_time": timestamps.render(self.end_ms),
            "timezone": self.tz_name,
            "limit": self.limit,
            "offset": self.offset,
        }  # fmt: skip


# --- validation -------------------------------------------------------------------------------


class RankBody(BaseModel):
    n: StrictInt = Field(ge=1, description="How many values of the dimension to keep")
    direction: str = Field("top", description='"top" (largest first) or "bottom"')
    dimension: str = Field(description="One of `dimensions` (not a time bucket; the alias `event` is refused)")


class SpecBody(BaseModel):
    """The analytics query spec (spec §9.2), for ``POST analytics/query`` and ``analytics/exports``.
    Unknown keys (``account_id``…) are ignored. ``parse_spec`` validates it with this model, then
    checks what a model cannot (names, operators, the window)."""

    model_config = ConfigDict(extra="allow")
    metrics: list[str] | None = Field(None, description="Aggregate mode: the values per row (events, users, sessions, groups, nps_…)")
    columns: list[str] | None = Field(None, description="Raw mode: one row per event with these columns")
    dimensions: list[str] | None = Field(None, description="Group-by keys; day/week/month buckets are zero-filled")
    conditions: list[list[Any]] | None = Field(None, description='[field, operator, value] triples, AND-ed; operators ==, !=, in, not in, like, ilike, not like, not ilike')
    order_by: list[list[str]] | None = Field(None, description='[field, "asc"|"desc"] pairs over selected metrics, dimensions or columns')
    rank_n: RankBody | None = Field(None, description="Keep only the top (or bottom) n values of one dimension, by the first metric's total")
    start_time: str = Field(description="Required. YYYY-MM-DD (local midnight in `timezone`) or RFC 3339")
    end_time: str | None = Field(None, description="Exclusive end of the window; default: now")
    timezone: str | None = Field(None, description="IANA zone of buckets and rendered times; default UTC")
    limit: StrictInt | None = Field(None, ge=0, description="Row cap (a synchronous answer is clamped at 1000)")
    offset: StrictInt | None = Field(None, ge=0, description="Rows to skip")


class ExportAccepted(BaseModel):
    job_id: str = Field(description="The export job's id")
    status: str = Field("queued", description="queued")


class ExportStatus(BaseModel):
    job_id: str
    status: str = Field(description="queued, running, done or failed")
    download_url: str | None = Field(None, description="done: a signed link valid 1 hour, minted afresh on every poll")
    expires_at: str | None = Field(None, description="done: the link's expiry, RFC 3339")
    failure_reason: str | None = Field(None, description="failed: why")


def _model_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    if first.get("type") == "missing":
        return bad_request(f"{where} is required")
    return bad_request(f"`{where}`: {first.get('msg', 'invalid value')}")


def parse_spec(body: Any, *, sync: bool = True, now_ms: int | None = None) -> Spec:
    """Validate a spec (spec §9.2); every problem is a 400 whose detail names the field."""
    if not isinstance(body, dict):
        raise bad_request("the query spec must be a JSON object")
    try:
        SpecBody.model_validate(body)
    except ValidationError as exc:
        raise _model_error(exc) from None
    tz_name, tz = _timezone(body.get("timezone"))
    metrics = _names(body, "metrics")
    columns_raw = _names(body, "columns")
    if metrics is None and columns_raw is None:
        raise bad_request("`metrics` or `columns` is required: metrics for aggregates, columns for raw rows")
    if metrics is not None and columns_raw is not None:
        raise bad_request("`metrics` and `columns` cannot both be set: metrics for aggregates, columns for raw rows")
    dimensions_raw = _names(body, "dimensions") or []
    if columns_raw is not None:
        if not columns_raw:
            raise bad_request("`columns` must name at least one column")
        if dimensions_raw:
            raise bad_request("`dimensions` apply to metrics; raw rows (`columns`) have no dimensions")
    for name in metrics or ():
        if name not in METRICS:
            raise bad_request(f'unknown metric "{name}"')
    if metrics is not None and len(set(metrics)) != len(metrics):
        raise bad_request("`metrics` names a metric twice")
    dimensions = [_dimension(name, "dimension") for name in dimensions_raw]
    if len({s.key for s in dimensions}) != len(dimensions):
        raise bad_request("`dimensions` names a dimension twice")
    columns = [_dimension(name, "column") for name in columns_raw or ()]
    if len({s.key for s in columns}) != len(columns):
        raise bad_request("`columns` names a column twice")
    conditions = _conditions(body.get("conditions"))
    start_ms, end_ms = _window(body, tz, now_ms)
    if sync:
        days = math.ceil((end_ms - start_ms) / DAY_MS)
        if days > SYNC_MAX_DAYS:
            raise bad_request(
                f"time range of {days} days exceeds the {SYNC_MAX_DAYS}-day maximum for this query shape "
                "(`start_time` to `end_time`; use POST analytics/exports for longer ranges)"
            )
    spec = Spec(
        metrics=metrics or [], dimensions=dimensions, columns=columns, conditions=conditions, order_by=[],
        rank=None, start_ms=start_ms, end_ms=end_ms, tz_name=tz_name, tz=tz,
        limit=_count(body, "limit"), offset=_count(body, "offset") or 0,
    )  # fmt: skip
    spec.rank = _rank(body.get("rank_n"), spec)
    spec.order_by = _order_by(body.get("order_by"), spec)
    if spec.nps:
        _check_nps(spec)
    return spec


def _names(body: dict, key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"`{key}` must be an array of strings")
    return value


def _dimension(name: str, what: str) -> Selected:
    dim = DIMENSIONS.get(name)
    if dim is None:
        raise bad_request(f'unknown {what} "{name}"')
    return Selected(name, dim)


def _timezone(value: Any) -> tuple[str, Any]:
    if value is None:
        return "UTC", timezone.utc
    if not isinstance(value, str) or not value.strip():
        raise bad_request("`timezone` must be an IANA time zone name such as America/New_York")
    try:
        return value, ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise bad_request(f'`timezone`: "{value}" is not a known IANA time zone') from None


def _instant(body: dict, key: str, tz) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"`{key}` must be a date (YYYY-MM-DD) or an RFC 3339 date-time string")
    text = value.strip()
    try:
        if len(text) == 10:
            return local_midnight_ms(date.fromisoformat(text), tz)
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise bad_request(f"`{key}` is not a valid date or RFC 3339 date-time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return timestamps.datetime_to_ms(parsed)


def _window(body: dict, tz, now_ms: int | None) -> tuple[int, int]:
    start = _instant(body, "start_time", tz)
    if start is None:
        raise bad_request("start_time is required")
    end = _instant(body, "end_time", tz)
    if end is None:
        end = now_ms if now_ms is not None else timestamps.now_ms()
    if end <= start:
        raise bad_request("`end_time` must be later than `start_time` (the window is [start_time, end_time))")
    for key, value in (("start_time", start), ("end_time", end)):
        if not EARLIEST_MS <= value <= LATEST_MS:
            raise bad_request(f"`{key}` must be between 1900-01-01 and 2200-01-01")
    return start, end


def _count(body: dict, key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**62:
        raise bad_request(f"`{key}` must be a non-negative integer")
    return value


def _scalar_ok(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _conditions(value: Any) -> list[Condition]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request("`conditions` must be an array of [field, operator, value] triples")
    out = []
    for i, item in enumerate(value):
        where = f"conditions[{i}]"
        if not isinstance(item, list) or len(item) != 3:
            raise bad_request(f"`{where}` must be a [field, operator, value] triple")
        name, op, operand = item
        if not isinstance(name, str):
            raise bad_request(f"`{where}[0]` must be a field name")
        dim = DIMENSIONS.get(name)
        if dim is None:
            raise bad_request(f'`{where}`: unknown dimension "{name}"')
        if dim.source == "bucket" or dim.name == "timestamp":
            raise bad_request(f'`{where}`: "{name}" cannot be a condition; the window is start_time/end_time')
        if dim.source in ("profile_key", "profile_value"):
            raise bad_request(f'`{where}`: "{name}" can be a dimension or column, not a condition')
        if not isinstance(op, str) or op not in OPERATORS:
            raise bad_request(f'`{where}`: unknown operator {op!r}; one of {", ".join(OPERATORS)}')
        if op in LIST_OPERATORS:
            if not isinstance(operand, list) or not operand or not all(_scalar_ok(v) for v in operand):
                raise bad_request(f"`{where}`: `{op}` takes a non-empty array of values")
            if len(operand) > MAX_IN_VALUES:
                raise bad_request(f"`{where}`: at most {MAX_IN_VALUES} values")
            operand = tuple(operand)
        elif op in LIKE_OPERATORS:
            if not isinstance(operand, str):
                raise bad_request(f"`{where}`: `{op}` takes a string pattern (with % and _)")
            if (len(operand) - len(operand.rstrip("\\"))) % 2:
                raise bad_request(f"`{where}`: the pattern ends with a lone escape character \\")
        elif not _scalar_ok(operand):
            raise bad_request(f"`{where}`: `{op}` takes a string, number or boolean")
        out.append(Condition(name, dim, op, operand))
    return out


def _rank(value: Any, spec: Spec) -> Rank | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request('`rank_n` must be an object like {"n": 5, "direction": "top", "dimension": "name"}')
    n = value.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise bad_request("`rank_n.n` must be a positive integer")
    direction = value.get("direction", "top")
    if direction not in ("top", "bottom"):
        raise bad_request('`rank_n.direction` must be "top" or "bottom"')
    key = value.get("dimension")
    if not isinstance(key, str):
        raise bad_request("`rank_n.dimension` is required: one of the query's dimensions")
    if key == "event":
        raise bad_request('`rank_n.dimension`: the alias "event" is not accepted here; use "name"')
    selected = next((s for s in spec.dimensions if s.key == key), None)
    if selected is None:
        raise bad_request(f'`rank_n.dimension` "{key}" must be one of the query\'s dimensions')
    if selected.dim.source == "bucket":
        raise bad_request(f'`rank_n.dimension` "{key}" is a time bucket; rank another dimension')
    if spec.raw or not spec.metrics:
        raise bad_request("`rank_n` ranks by a metric: it needs `metrics`")
    if spec.nps:
        raise bad_request("`rank_n` cannot rank NPS metrics")
    return Rank(min(n, 2**31), direction == "top", key, selected.dim)


def _order_by(value: Any, spec: Spec) -> list[tuple[str, bool]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request('`order_by` must be an array of [field, "asc"|"desc"] pairs')
    selected = set(spec.metrics) | {s.key for s in spec.dimensions} | {s.key for s in spec.columns}
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = [item, "asc"]
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
            raise bad_request(f'`order_by[{i}]` must be a [field, "asc"|"desc"] pair')
        key, direction = item
        if direction not in ("asc", "desc"):
            raise bad_request(f'`order_by[{i}]`: direction must be "asc" or "desc"')
        if key not in selected:
            raise bad_request(f'`order_by[{i}]`: "{key}" is not a selected metric, dimension or column')
        out.append((key, direction == "desc"))
    return out


def _check_nps(spec: Spec) -> None:
    plain = [m for m in spec.metrics if m in COUNT_METRICS]
    if plain:
        raise bad_request(f'metric "{plain[0]}" cannot be combined with NPS metrics in one query')
    if "nps_computed_score" in spec.metrics and "nps_scores_submitted" in spec.metrics:
        raise bad_request('metric "nps_computed_score" is not allowed alongside "nps_scores_submitted"')
    first = next(m for m in spec.metrics if m in NPS_METRICS)
    if not spec.flow_ids:
        raise bad_request(f'metric "{first}" requires a `flow_id` condition (the NPS survey id, with == or in)')
    if [s.key for s in spec.dimensions] != ["day"]:
        raise bad_request(f'metric "{first}" is a rolling daily figure: `dimensions` must be ["day"]')


# --- time buckets -----------------------------------------------------------------------------


def local_midnight_ms(day: date, tz) -> int:
    return timestamps.datetime_to_ms(datetime(day.year, day.month, day.day, tzinfo=tz))


def local_date(ms: int, tz) -> date:
    return datetime.fromtimestamp(ms / 1000, tz).date()


def bucket_label(day: date, unit: str) -> date:
    """The first local day of the ``unit`` bucket holding ``day`` (weeks start on Monday)."""
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    return day


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def day_number(day: date) -> int:
    """Days since 1970-01-01 of a calendar date: what ``(ms + utc_offset_ms) // DAY_MS`` gives
    for any instant of that local day."""
    return day.toordinal() - _EPOCH_ORDINAL


def _offset_ms(ms: int, tz) -> int:
    return int(datetime.fromtimestamp(ms / 1000, tz).utcoffset().total_seconds() * 1000)


def offset_changes(start_ms: int, end_ms: int, tz) -> list[tuple[int, int]]:
    """The zone's UTC offset over ``[start_ms, end_ms)`` as ``[(from_ms, offset_ms), …]``: the
    first from ``start_ms``, then one per change (DST), located to the millisecond by bisection
    between samples 12 hours apart (no zone changes twice within 12 hours)."""
    changes = [(start_ms, _offset_ms(start_ms, tz))]
    probe = start_ms
    while probe < end_ms - 1:
        following = min(probe + 12 * 3_600_000, end_ms - 1)
        after = _offset_ms(following, tz)
        if after != changes[-1][1]:
            low, high = probe, following
            while high - low > 1:
                middle = (low + high) // 2
                if _offset_ms(middle, tz) == after:
                    high = middle
                else:
                    low = middle
            changes.append((high, after))
        probe = following
    return changes


@dataclass(frozen=True)
class LocalDays:
    """The window's local calendar days, for bucketing in SQL: an event's local day number is
    ``(timestamp + offset) / DAY_MS`` with the offset read from ``offsets`` (one value, or a CASE
    over the DST changes inside the window); ``rows`` maps each day number to its bucket labels."""

    offsets: list[tuple[int, int]]
    rows: list[tuple]  # (day number, label of each unit…)


def local_days(start_ms: int, end_ms: int, units: list[str], tz, *, lookback_days: int = 0) -> LocalDays:
    first = local_date(start_ms, tz) - timedelta(days=lookback_days)
    last = local_date(end_ms - 1, tz)
    rows = []
    day = first
    while day <= last:
        rows.append((day_number(day), *[bucket_label(day, u).isoformat() for u in units]))
        day += timedelta(days=1)
    return LocalDays(offset_changes(local_midnight_ms(first, tz), end_ms, tz), rows)


class Renderer:
    """Turns values read from SQL into the API's: strings for dimensions, ISO times in the
    query's zone, JSON objects for raw object columns."""

    def __init__(self, tz):
        self.tz = tz
        self._offsets: dict[int, int] = {}

    def offset_minutes(self, ms: int) -> int:
        if self.tz is timezone.utc:
            return 0
        hour = ms // 3_600_000  # zone offsets change on whole quarter hours at most: cache per hour
        offset = self._offsets.get(hour)
        if offset is None:
            local = datetime.fromtimestamp(ms / 1000, self.tz)
            offset = self._offsets[hour] = int(local.utcoffset().total_seconds() // 60)
            # A change inside this hour (e.g. 01:30 offsets): don't cache a value that is wrong for part of it.
            other = datetime.fromtimestamp((hour * 3_600_000 + 3_599_999) / 1000, self.tz).utcoffset()
            if int(other.total_seconds() // 60) != offset:
                del self._offsets[hour]
        return offset

    def instant(self, ms: int | None) -> str:
        if ms is None:
            return ""
        return timestamps.render(ms, self.offset_minutes(ms))

    def bucket_of(self, ms: int, unit: str) -> str:
        return bucket_label(datetime.fromtimestamp(ms / 1000, self.tz).date(), unit).isoformat()

    @staticmethod
    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, (dict, list)):
            return orjson.dumps(value).decode()
        return str(value)

    @staticmethod
    def json_value(value: Any) -> Any:
        if isinstance(value, (str, bytes)):
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError:
                return value
        return value


# --- running ----------------------------------------------------------------------------------


@dataclass
class QueryResult:
    rows: list[dict]
    truncated: bool


def run_query(db, account_id: str, spec: Spec) -> QueryResult:
    """The synchronous answer: at most ``SYNC_ROW_CAP`` rows (after ``offset``), ``truncated``
    when more matched than the cap let through."""
    from opencues import analytics_sql

    wanted = SYNC_ROW_CAP if spec.limit is None else min(spec.limit, SYNC_ROW_CAP)
    probe = spec.limit is None or spec.limit > SYNC_ROW_CAP
    compiled = analytics_sql.compile_query(db, account_id, spec, limit=wanted + 1 if probe else wanted)
    with db.connect() as conn:
        fetched = conn.execute(compiled.statement).all()
    truncated = len(fetched) > wanted
    rows = [compiled.render(r) for r in fetched[:wanted]]
    return QueryResult(rows, truncated)


def iter_export_rows(conn, db, account_id: str, spec: Spec) -> Iterator[list[dict]]:
    """Every row of ``spec`` (its ``limit``, if any, and ``offset``; no clamp), in batches."""
    from opencues import analytics_sql, exports

    compiled = analytics_sql.compile_query(db, account_id, spec, limit=spec.limit)
    render = compiled.render
    for batch in exports._batches(conn, compiled.statement):
        yield [render(r) for r in batch]


# --- exports (async jobs) ---------------------------------------------------------------------

EXPORT_KIND = "analytics_export"
LINK_TTL_SECONDS = 3600  # each poll of a finished export mints a link valid this long (spec §9.5)


def export_file_key(account_id: str, job_id: str) -> str:
    from opencues.filestore import EXPORT_FILES  # swept by the workers once older than the link lifetime

    return f"{EXPORT_FILES}/{account_id}/analytics-{job_id}.json"


def unfinished_exports(db, account_id: str) -> int:
    """The account's analytics exports queued or running (the concurrency limit counts them)."""
    from sqlalchemy import func, select

    from opencues.jobs import JobStatus
    from opencues.storage.schema import jobs as jobs_table

    with db.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(jobs_table).where(
                jobs_table.c.account_id == account_id, jobs_table.c.kind == EXPORT_KIND,
                jobs_table.c.status == JobStatus.IN_PROGRESS.value,
            )  # fmt: skip
        ).scalar_one()


def submit_export(db, account_id: str, spec: Spec, *, limit: int) -> str:
    """Queue an export job for ``spec``; 429 when ``limit`` exports are already unfinished."""
    from opencues import jobs

    used = unfinished_exports(db, account_id)
    if used >= limit:
        raise ApiError(429, f"{used} analytics exports are already queued or running for this account (the limit is {limit}); "
                            "retry when one finishes", {"Retry-After": "1"})  # fmt: skip
    return jobs.submit(db, account_id, EXPORT_KIND, params={"spec": spec.to_params()}).job_id


def export_status(db, file_store, settings, account_id: str, job_id: str, base_url: str) -> dict:
    """The job status object of spec §9.5; a finished export gets a freshly signed link."""
    from sqlalchemy import select

    from opencues import links
    from opencues.storage.schema import job_events
    from opencues.storage.schema import jobs as jobs_table

    with db.connect() as conn:
        row = conn.execute(
            select(jobs_table.c.status, jobs_table.c.lease_owner).where(
                jobs_table.c.id == job_id, jobs_table.c.account_id == account_id, jobs_table.c.kind == EXPORT_KIND
            )
        ).first()
        if row is None:
            raise ApiError(404, "no such export job")
        history = conn.execute(
            select(job_events.c.name, job_events.c.attributes).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
        ).all()
    if row.status == "FAILED":
        reason = next((e.attributes.get("reason") for e in reversed(history) if e.name == "Failed"), None)
        return {"job_id": job_id, "status": "failed", "failure_reason": reason or "export failed"}
    if row.status == "IN_PROGRESS":
        return {"job_id": job_id, "status": "running" if history else "queued"}
    key = export_file_key(account_id, job_id)
    if not file_store.exists(key):
        return {"job_id": job_id, "status": "failed", "failure_reason": "export expired"}
    token, expires_at = links.sign(links.server_secret(settings), key, f"analytics-{job_id[:8]}.json", LINK_TTL_SECONDS)
    return {
        "job_id": job_id,
        "status": "done",
        "download_url": f"{base_url.rstrip('/')}/downloads/{token}",
        "expires_at": timestamps.render(expires_at * 1000),
    }


def write_export(conn, db, account_id: str, spec: Spec, out, heartbeat=None, *, helpers: int = 0) -> int:
    """Stream the rows as one bare JSON array into ``out``; returns the row count. Raw rows of
    plain columns arrive from the database as JSON text (``analytics_sql.compile_json_rows``);
    on PostgreSQL a large export of them in the default order is rendered in time windows by
    ``helpers`` connections side by side (``_write_windowed``). Others are rendered here, a
    batch at a time. ``conn`` must not have begun a transaction yet."""
    from opencues import analytics_sql, exports

    rows = 0
    out.write(b"[")
    statement = analytics_sql.compile_json_rows(db, account_id, spec, limit=spec.limit)
    windowed = None
    if statement is not None and helpers and db.is_postgres and not spec.offset and not spec.order_by:
        windowed = _write_windowed(conn, db, account_id, spec, out, heartbeat, helpers)
    if windowed is not None:
        rows = windowed
    elif statement is not None:
        # PostgreSQL: streamed as a plain query and read ahead in a thread (``exports._row_batches``).
        with closing(exports._row_batches(conn, db, statement)) as batches:
            for batch in batches:
                encoded = ",".join([r[0] for r in batch]).encode()
                out.write(encoded if rows == 0 else b"," + encoded)
                rows += len(batch)
                if heartbeat is not None:
                    heartbeat(rows)
    else:
        for batch in iter_export_rows(conn, db, account_id, spec):
            if not batch:
                continue
            encoded = orjson.dumps(batch)
            out.write(encoded[1:-1] if rows == 0 else b"," + encoded[1:-1])
            rows += len(batch)
            if heartbeat is not None:
                heartbeat(rows)
    out.write(b"]")
    return rows


def _write_windowed(conn, db, account_id: str, spec: Spec, out, heartbeat, helpers: int) -> int | None:
    """PostgreSQL: the rows rendered by ``helpers`` connections, each a time window at a time, in
    this connection's snapshot (``opencues.export_windows``), written in order. One streamed
    query is bound by the one server process that renders it (measured: ~200,000 rows/s at 10M
    events); helpers render in several. None (nothing written) when the export's time range
    holds too few events to be worth it."""
    from sqlalchemy import select

    from opencues import analytics_sql, export_windows, exports
    from opencues.storage.schema import events

    conn = conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot for all
    in_range = [events.c.account_id == account_id, events.c.timestamp >= spec.start_ms, events.c.timestamp < spec.end_ms]
    if not exports.worth_helpers(conn, in_range):
        return None
    first = conn.execute(select(events.c.timestamp).where(*in_range).order_by(events.c.timestamp).limit(1)).scalar()
    last = conn.execute(select(events.c.timestamp).where(*in_range).order_by(events.c.timestamp.desc()).limit(1)).scalar()
    sql, params = exports._for_helpers(db, analytics_sql.compile_json_windows(db, account_id, spec))
    plan = export_windows.RenderPlan(sql=sql, params=params, format="json", **exports.postgres_helpers_source(conn, db))
    limit = spec.limit if spec.limit is not None else 1 << 62
    span = export_windows.Span(first, last + 1, limit)
    # Every window's rows come each after a comma: the array's first row must not.
    return export_windows.write(plan, span, _WithoutFirstByte(out), helpers=helpers, progress=heartbeat)


class _WithoutFirstByte:
    """Writes to ``out`` all but the first byte written."""

    def __init__(self, out):
        self.out = out
        self.skipped = False

    def write(self, data: bytes) -> None:
        if not self.skipped and data:
            self.skipped = True
            data = data[1:]
        self.out.write(data)


def run_export_job(ctx) -> dict:
    """The ``analytics_export`` handler: the spec's rows into the file store as a JSON array.
    A retried attempt rewrites the file from scratch (the store replaces it atomically)."""
    from opencues.worker import JobFailed

    job = ctx.job
    try:
        spec = parse_spec(job.params["spec"], sync=False)
    except ApiError as exc:  # validated at submission; only a changed server could refuse it now
        raise JobFailed(f"invalid spec: {exc.detail}") from None
    last_beat = [0]

    def heartbeat(rows: int) -> None:
        if rows - last_beat[0] >= 1_000_000:
            last_beat[0] = rows
            ctx.heartbeat()

    with ctx.file_store.writer(export_file_key(job.account_id, job.id)) as handle:
        with ctx.db.connect() as conn:
            rows = write_export(conn, ctx.db, job.account_id, spec, handle, heartbeat, helpers=ctx.settings.export_helpers)
    return {"rows_exported": rows}


def _register() -> None:
    from opencues import worker

    worker.register(EXPORT_KIND, "Analytics Export", run_export_job, start_event="Exporting")



_register()
