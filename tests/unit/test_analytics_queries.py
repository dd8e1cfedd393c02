"""Analytics queries on both databases, against answers computed without the compiler: a
plain-Python evaluator of the spec (``reference``) over the fixture's events, and hand-worked NPS
and DST fixtures."""

from __future__ import annotations

import fnmatch
import json
import random
import re
from datetime import date, datetime, timedelta, timezone
from itertools import product
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import null

from opencues import analytics, event_counts
from opencues.analytics_fields import DIMENSIONS
from opencues.events import flow_id_of
from opencues.storage.schema import events, profiles, segment_members

ACCOUNT = "acct1"
NAMES = ["appcues:flow_started", "appcues:flow_completed", "appcues:step_started", "appcues:step_completed",
         "appcues:step_error", "appcues:step_child_error", "appcues:v2:step_error", "appcues:session_started",
         "Clicked Button"]  # fmt: skip
START = datetime(2026, 2, 26, tzinfo=timezone.utc)
SEGMENTS = {"seg-a": ["u1", "u2", "u3", "u4", "u5"], "seg-b": ["u4", "u5", "u6", "u7", "u8"]}
PROFILES = {f"u{i}": {"email": f"u{i}@example.com", "plan": ["free", "pro"][i % 2], "_lastSeenAt": "2026-03-01"} for i in range(1, 7)}
PROFILE_GROUPS = {"u1": "pg1", "u2": "pg1", "u3": "pg2"}  # profiles.group_id: the user's current group


def _fixture_events() -> list[dict]:
    """~500 events over six weeks around both 2026 DST changes (US 03-08, EU 03-29), many near
    local midnights; attributes present, absent or of other types."""
    rng = random.Random(7)
    rows = []
    for i in range(500):
        name = rng.choice(NAMES)
        when = START + timedelta(days=rng.randrange(40), hours=rng.choice([0, 3, 4, 5, 11, 22, 23]), minutes=rng.randrange(60))
        attributes: dict = {"_sessionId": f"s{rng.randrange(30)}"}
        if name != "appcues:session_started":
            if rng.random() < 0.9:
                attributes["flowId"] = rng.choice(["f1", "f2", "f3", "F1", 7])
            if "step" in name:
                attributes["stepId"] = rng.choice(["st1", "st2", "st3"])
            if "error" in name:
                attributes["message"] = rng.choice(["Element not found", "Timeout"])
                attributes["url"] = "https://app.example.com/" + rng.choice(["a", "b"])
        if rng.random() < 0.5:
            attributes["groupId"] = rng.choice(["g1", "g2"])
        if rng.random() < 0.3:
            attributes["platform"] = rng.choice(["web", "ios"])
        if rng.random() < 0.2:
            attributes["flowVersion"] = rng.choice([1, 2])
        row = {"id": i + 1, "user_id": f"u{rng.randrange(1, 11)}", "name": name,
               "timestamp": int(when.timestamp() * 1000), "attributes": attributes}  # fmt: skip
        if rng.random() < 0.3:  # track's top-level group_id (the event's group before attributes.groupId)
            row["group_id"] = rng.choice(["g1", "tg2"])
        if rng.random() < 0.2:
            row["context"] = {"ip": rng.choice(["10.0.0.1", "10.0.0.2"])}
        rows.append(row)
    return rows


EVENTS = _fixture_events()


def store(conn, rows) -> None:
    """Insert events rows as every writer does: ``flow_id`` filled, hourly counts kept."""
    rows = [rows] if isinstance(rows, dict) else rows
    conn.execute(events.insert(), [{"flow_id": flow_id_of(r["attributes"]), **r} for r in rows])
    event_counts.rebuild(conn)


def stored(account_id: str, event: dict) -> dict:
    """The ``events`` row of a fixture event, ``flow_id`` filled as every writer fills it."""
    return {"account_id": account_id, "flow_id": flow_id_of(event["attributes"]), "group_id": None,
            **{k: v for k, v in event.items() if k != "id"}}


@pytest.fixture
def loaded(db):
    with db.begin() as conn:
        # One statement, in order: ids as in the fixture. An event without context gets SQL NULL
        # there (``null()``; a None would be stored as JSON null).
        conn.execute(events.insert(), [{"context": null(), **stored(ACCOUNT, e)} for e in EVENTS])
        # another account's events never count
        store(conn, [stored("acct2", e) for e in EVENTS[:50] if "context" not in e])  # (and counts every account's)
        conn.execute(segment_members.insert(), [
            {"account_id": ACCOUNT, "segment_id": s, "user_id": u} for s, users in SEGMENTS.items() for u in users
        ])  # fmt: skip
        conn.execute(profiles.insert(), [
            {"account_id": ACCOUNT, "user_id": u, "attributes": a, "created_at": 1, "updated_at": 1767225600000 + i,
             "group_id": PROFILE_GROUPS.get(u)}
            for i, (u, a) in enumerate(PROFILES.items())
        ])  # fmt: skip
    return db


# --- the reference evaluator ------------------------------------------------------------------


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _label(ts: int, unit: str, tz) -> str:
    day = datetime.fromtimestamp(ts / 1000, tz).date()
    if unit == "week":
        day -= timedelta(days=day.weekday())
    elif unit == "month":
        day = day.replace(day=1)
    return day.isoformat()


def _iso(ts: int, tz) -> str:
    text = datetime.fromtimestamp(ts / 1000, tz).isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _values(name: str, event: dict, tz) -> list:
    """The dimension's values for an event (several for segments / profile attributes)."""
    dim = DIMENSIONS[name]
    attributes = event["attributes"]
    profile = PROFILES.get(event["user_id"])
    if name in ("name", "event"):
        return [event["name"]]
    if name == "user_id":
        return [event["user_id"]]
    if name == "timestamp":
        return [event["timestamp"]]
    if dim.source == "bucket":
        return [_label(event["timestamp"], dim.target, tz)]
    if dim.source == "constant":
        return [dim.target]
    if dim.source == "null":
        return [""]
    if dim.source == "segment":
        return sorted(s for s, users in SEGMENTS.items() if event["user_id"] in users) or [None]
    if dim.source == "profile":
        return [profile.get(dim.target) if profile else None]
    if name == "flow_id":
        return [attributes.get("flowId")]
    if name == "context":
        return [event.get("context")]
    if dim.source == "event_group":
        return [event.get("group_id") or attributes.get("groupId")]
    if dim.source == "profile_group":
        return [PROFILE_GROUPS.get(event["user_id"])]
    if dim.source == "profile_updated":
        return [1767225600000 + list(PROFILES).index(event["user_id"]) if profile else None]
    if dim.source in ("profile_key", "profile_value"):
        if not profile:
            return [None]
        return list(profile) if dim.source == "profile_key" else list(profile.values())
    if dim.only_on and event["name"] not in dim.only_on:
        return [None]
    if not dim.target:
        return [attributes]
    return [attributes.get(dim.target[0])]


def _like(pattern: str, text: str, fold: bool) -> bool:
    regex, chars = "", iter(pattern)
    for c in chars:
        if c == "\\":
            regex += re.escape(next(chars, "\\"))
        else:
            regex += ".*" if c == "%" else "." if c == "_" else re.escape(c)
    return re.fullmatch(regex, text, re.S | (re.I if fold else 0)) is not None


def _combos(names: list, event: dict, tz) -> list[tuple]:
    """Every combination of the dimensions' values; a profile attribute's name and value pair up."""
    options = [list(enumerate(_values(n, event, tz))) for n in names]
    out = []
    for combo in product(*options):
        paired = {i for n, (i, _) in zip(names, combo) if n in ("attribute_name", "attribute_value")}
        if len(paired) <= 1:
            out.append(tuple(v for _, v in combo))
    return out


def _matches(condition, event, tz) -> bool:
    name, op, value = condition
    positive = {"!=": "==", "not in": "in", "not like": "like", "not ilike": "ilike"}.get(op, op)
    texts = [_text(v) for v in _values(name, event, tz)]
    if positive == "==":
        hit = any(t == _text(value) for t in texts)
    elif positive == "in":
        hit = any(t in {_text(v) for v in value} for t in texts)
    else:
        hit = any(_like(value, t, positive == "ilike") for t in texts)
    return hit if positive == op else not hit


def reference(spec: dict, account_events=EVENTS) -> list[dict]:
    tz = ZoneInfo(spec.get("timezone", "UTC"))

    def instant(value: str) -> int:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp() * 1000)
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)

    start, end = instant(spec["start_time"]), instant(spec["end_time"])
    chosen = [e for e in account_events if start <= e["timestamp"] < end
              and all(_matches(c, e, tz) for c in spec.get("conditions", []))]  # fmt: skip
    chosen.sort(key=lambda e: (e["timestamp"], e["id"]))
    if "columns" in spec:
        rows = []
        for e in chosen:
            for combo in _combos(spec["columns"], e, tz):
                row = {}
                for c, v in zip(spec["columns"], combo):
                    dim = DIMENSIONS[c]
                    row[c] = _iso(v, tz) if c == "timestamp" else v if dim.json else _text(v)
                rows.append(row)
        return _page(rows, spec)
    dims, metrics = spec.get("dimensions", []), spec["metrics"]
    groups: dict[tuple, list] = {}
    for e in chosen:
        for combo in _combos(dims, e, tz):
            key = tuple(v if d in ("timestamp", "last_updated") else _text(v) for d, v in zip(dims, combo))
            groups.setdefault(key, []).append(e)

    def measure(metric: str, members: list) -> int:
        if metric == "events":
            return len(members)
        if metric == "groups":
            seen = {m.get("group_id") or m["attributes"].get("groupId") for m in members}
            return len(seen - {None})
        attribute = {"users": None, "sessions": "_sessionId"}[metric]
        seen = {m["user_id"] if attribute is None else m["attributes"].get(attribute) for m in members}
        return len(seen - {None})

    rank = spec.get("rank_n")
    totals = {}
    if rank:
        r = dims.index(rank["dimension"])
        for key, members in groups.items():
            totals.setdefault(key[r], []).extend(members)
        scored = {value: measure(metrics[0], list({id(m): m for m in ms}.values())) for value, ms in totals.items()}
        sign = -1 if rank.get("direction", "top") == "top" else 1
        kept = sorted(scored, key=lambda v: (sign * scored[v], v))[: rank["n"]]
        groups = {k: v for k, v in groups.items() if k[r] in kept}
        totals = scored
    time_dims = [d for d in dims if DIMENSIONS[d].source == "bucket"]
    if time_dims:  # zero-fill: every local day's labels x every other combination seen
        first = datetime.fromtimestamp(start / 1000, tz).date()
        last = datetime.fromtimestamp((end - 1) / 1000, tz).date()
        labels = []
        day = first
        while day <= last:
            stamp = int(datetime(day.year, day.month, day.day, 12, tzinfo=tz).timestamp() * 1000)
            item = tuple(_label(stamp, DIMENSIONS[d].target, tz) for d in time_dims)
            if item not in labels:
                labels.append(item)
            day += timedelta(days=1)
        others = [i for i, d in enumerate(dims) if d not in time_dims]
        combos = {tuple(k[i] for i in others) for k in groups} if others else {()}
        for lab, combo in product(labels, combos):
            key, li, oi = [], iter(lab), iter(combo)
            for d in dims:
                key.append(next(li) if d in time_dims else next(oi))
            groups.setdefault(tuple(key), [])
    rows = []
    for key, members in groups.items():
        row = {d: (_iso(v, tz) if d in ("timestamp", "last_updated") and v is not None else _text(v)) for d, v in zip(dims, key)}
        row.update({m: measure(m, members) for m in metrics})
        row["__sort"] = key
        rows.append(row)
    if not dims:
        rows = [{m: measure(m, []) for m in metrics}] if not rows else rows
    sign = -1 if rank and rank.get("direction", "top") == "top" else 1
    rows.sort(key=lambda r: ((sign * totals[r["__sort"][dims.index(rank["dimension"])]],) if rank else ()) + tuple(
        (0, "") if v is None else (1, v) for v in r.get("__sort", ())))  # fmt: skip
    for r in rows:
        r.pop("__sort", None)
    return _page(rows, spec)


def _page(rows: list, spec: dict) -> list:
    for key, direction in reversed(spec.get("order_by", [])):
        rows.sort(key=lambda r: r[key], reverse=direction == "desc")
    offset = spec.get("offset", 0)
    limit = spec.get("limit")
    rows = rows[offset:]
    return rows[:limit] if limit is not None else rows


def run(db, spec: dict) -> list[dict]:
    return analytics.run_query(db, ACCOUNT, analytics.parse_spec(spec)).rows


W = {"start_time": "2026-03-01", "end_time": "2026-04-01"}

CASES = {
    # every count metric, no dimension: one total row
    "totals": {"metrics": ["events", "users", "sessions", "groups"], **W},
    # time buckets, zero-filled, in three zones (two cross a DST change)
    "day utc": {"metrics": ["events", "users"], "dimensions": ["day"], **W},
    "day new york": {"metrics": ["events", "users"], "dimensions": ["day"], "timezone": "America/New_York", **W},
    "day paris, sparse flow": {"metrics": ["events"], "dimensions": ["day"], "timezone": "Europe/Paris",
                               "conditions": [["flow_id", "==", "F1"]], **W},
    "week": {"metrics": ["events", "sessions"], "dimensions": ["week"], "timezone": "America/New_York", **W},
    "month x name": {"metrics": ["events"], "dimensions": ["month", "name"], "start_time": "2026-02-26", "end_time": "2026-04-07"},
    "day and week": {"metrics": ["users"], "dimensions": ["week", "day"], "timezone": "Asia/Kolkata", **W},
    "rfc3339 window": {"metrics": ["events"], "dimensions": ["day"], "start_time": "2026-03-08T06:30:00Z",
                       "end_time": "2026-03-10T05:00:00-04:00", "timezone": "America/New_York"},
    # event, identity, flow, error, page and membership dimensions
    "event dims": {"metrics": ["events"], "dimensions": ["event", "event_type", "source", "platform"], **W},
    "identity": {"metrics": ["events"], "dimensions": ["user_id", "group_id", "email"], **W},
    "groups": {"metrics": ["groups", "events"], "dimensions": ["user_group_id", "context"], **W},
    "flows": {"metrics": ["events", "users"], "dimensions": ["flow_id", "step_id", "flow_version"], **W},
    "errors": {"metrics": ["events"], "dimensions": ["step_error_message", "step_child_error_message", "step_error_url"], **W},
    "segments": {"metrics": ["events", "users"], "dimensions": ["segment_id"], **W},
    "profile attributes": {"metrics": ["users"], "dimensions": ["attribute_name", "attribute_value"], **W},
    "profile times": {"metrics": ["events"], "dimensions": ["last_updated", "last_seen", "window"], **W},
    # every operator
    "==": {"metrics": ["events"], "dimensions": ["flow_id"], "conditions": [["name", "==", "appcues:step_started"]], **W},
    "!= includes absent": {"metrics": ["events"], "dimensions": ["flow_id"], "conditions": [["flow_id", "!=", "f1"]], **W},
    "== empty is absent": {"metrics": ["events"], "dimensions": ["name"], "conditions": [["step_id", "==", ""]], **W},
    "in": {"metrics": ["users"], "dimensions": ["name"], "conditions": [["event", "in", ["appcues:flow_started", "appcues:flow_completed"]]], **W},
    "not in": {"metrics": ["events"], "dimensions": ["step_id"], "conditions": [["step_id", "not in", ["st1", ""]]], **W},
    "like": {"metrics": ["events"], "dimensions": ["name"], "conditions": [["name", "like", "appcues:step\\_%"]], **W},
    "like is case-sensitive": {"metrics": ["events"], "dimensions": ["flow_id"], "conditions": [["flow_id", "like", "f%"]], **W},
    "ilike": {"metrics": ["events"], "dimensions": ["flow_id"], "conditions": [["flow_id", "ilike", "f1"]], **W},
    "not like": {"metrics": ["events"], "dimensions": ["name"], "conditions": [["name", "not like", "%error"]], **W},
    "not ilike": {"metrics": ["events"], "dimensions": ["name"], "conditions": [["name", "not ilike", "APPCUES:%"]], **W},
    "number ==": {"metrics": ["events"], "dimensions": ["flow_version"], "conditions": [["flow_version", "==", 2]], **W},
    "segment ==": {"metrics": ["users"], "dimensions": ["user_id"], "conditions": [["segment_id", "==", "seg-b"]], **W},
    "segment not in": {"metrics": ["users"], "dimensions": ["user_id"], "conditions": [["user_segment_id", "not in", ["seg-a"]]], **W},
    "profile condition": {"metrics": ["events"], "dimensions": ["email"], "conditions": [["email", "like", "u1%"]], **W},
    "and-ed": {"metrics": ["events"], "dimensions": ["day"], "conditions": [["flow_id", "==", "f2"], ["name", "like", "%started"], ["platform", "!=", "ios"]], **W},
    # ranking, ordering, paging
    "rank top": {"metrics": ["events"], "dimensions": ["name"], "rank_n": {"n": 3, "dimension": "name"}, **W},
    # events by name: the hourly counts, and the events of the window's partial hours
    "names, partial hours": {"metrics": ["events"], "dimensions": ["name"], "start_time": "2026-03-02T04:30:00Z",
                             "end_time": "2026-03-20T22:15:00Z", "conditions": [["name", "not like", "%started"]]},
    "names, within an hour": {"metrics": ["events"], "dimensions": ["event"], "start_time": "2026-03-02T00:00:00Z",
                              "end_time": "2026-03-02T00:59:00Z"},
    "names, half-hour zone": {"metrics": ["events"], "dimensions": ["name"], "timezone": "Asia/Kolkata",
                              "conditions": [["event_type", "==", "track"]], "rank_n": {"n": 4, "dimension": "name"}, **W},
    "names, other condition": {"metrics": ["events"], "dimensions": ["name"], "conditions": [["flow_id", "==", "f1"]], **W},
    "rank bottom": {"metrics": ["users"], "dimensions": ["name"], "rank_n": {"n": 2, "direction": "bottom", "dimension": "name"}, **W},
    "rank with day": {"metrics": ["events", "users"], "dimensions": ["day", "flow_id"], "rank_n": {"n": 2, "dimension": "flow_id"}, **W},
    "rank with other dim": {"metrics": ["users"], "dimensions": ["name", "flow_id"], "rank_n": {"n": 2, "dimension": "flow_id"}, **W},
    "order_by": {"metrics": ["events"], "dimensions": ["user_id"], "order_by": [["events", "desc"], ["user_id", "asc"]], **W},
    "limit offset": {"metrics": ["events"], "dimensions": ["day"], "limit": 5, "offset": 3, **W},
    # raw rows
    "raw": {"columns": ["timestamp", "user_id", "name", "flow_id", "step_id", "day"], "timezone": "America/New_York", **W},
    "raw objects": {"columns": ["timestamp", "attributes"], "conditions": [["name", "==", "appcues:step_error"]], "limit": 20, **W},
    "raw order": {"columns": ["user_id", "timestamp"], "order_by": [["user_id", "desc"], ["timestamp", "asc"]], "limit": 30, **W},
    "empty": {"metrics": ["events"], "dimensions": ["name"], "conditions": [["name", "==", "nope"]], **W},
}


@pytest.mark.parametrize("case", list(CASES))
def test_answers_match_the_reference_evaluator(loaded, case):
    spec = CASES[case]
    expected = reference(spec)
    assert expected or case == "empty", "the fixture should give this case rows"
    assert run(loaded, spec) == expected


def test_zero_filled_days_without_events(loaded):
    rows = run(loaded, {"metrics": ["events", "users"], "dimensions": ["day"], "start_time": "2027-01-01", "end_time": "2027-01-04"})
    assert rows == [{"day": d, "events": 0, "users": 0} for d in ("2027-01-01", "2027-01-02", "2027-01-03")]


def test_buckets_follow_local_midnight_across_dst(db):
    # New York: EST (UTC-5) until 2026-03-08 02:00, then EDT (UTC-4).
    stamps = ["2026-03-08T04:30:00Z",  # 03-07 23:30 EST
              "2026-03-08T05:30:00Z",  # 03-08 00:30 EST
              "2026-03-09T03:30:00Z",  # 03-08 23:30 EDT
              "2026-03-09T04:30:00Z"]  # 03-09 00:30 EDT  # fmt: skip
    with db.begin() as conn:
        store(conn, [
            {"account_id": ACCOUNT, "user_id": "u", "name": "e", "attributes": {},
             "timestamp": int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)} for s in stamps
        ])  # fmt: skip
    spec = {"metrics": ["events"], "dimensions": ["day"], "timezone": "America/New_York", "start_time": "2026-03-07", "end_time": "2026-03-10"}
    assert run(db, spec) == [{"day": "2026-03-07", "events": 1}, {"day": "2026-03-08", "events": 2}, {"day": "2026-03-09", "events": 1}]
    raw = run(db, {**spec, "metrics": None, "dimensions": None, "columns": ["timestamp"]})
    assert [r["timestamp"] for r in raw] == ["2026-03-07T23:30:00.000-05:00", "2026-03-08T00:30:00.000-05:00",
                                             "2026-03-08T23:30:00.000-04:00", "2026-03-09T00:30:00.000-04:00"]  # fmt: skip


def test_sync_answers_are_clamped_at_1000_rows(db):
    with db.begin() as conn:
        store(conn, [
            {"account_id": ACCOUNT, "user_id": f"u{i}", "name": "e", "timestamp": 1767225600000 + i, "attributes": {}} for i in range(1005)
        ])  # fmt: skip
    spec = {"metrics": ["events"], "dimensions": ["user_id"], "start_time": "2026-01-01", "end_time": "2026-01-02"}
    result = analytics.run_query(db, ACCOUNT, analytics.parse_spec(spec))
    assert (len(result.rows), result.truncated) == (1000, True)
    result = analytics.run_query(db, ACCOUNT, analytics.parse_spec({**spec, "offset": 10}))
    assert (len(result.rows), result.truncated) == (995, False)
    result = analytics.run_query(db, ACCOUNT, analytics.parse_spec({**spec, "limit": 20}))
    assert (len(result.rows), result.truncated) == (20, False)


# --- NPS: a hand-computed fixture -------------------------------------------------------------

NPS_EVENTS = [
    # (user, name, when (UTC), attributes)
    ("u1", "appcues:nps_score", "2026-04-05T10:00:00", {"score": 10}),
    ("u2", "appcues:nps_score", "2026-04-02T12:00:00", {"score": 3}),
    ("u3", "appcues:nps_score", "2026-05-01T09:00:00", {"score": 8}),
    ("u3", "appcues:nps_score_and_feedback", "2026-05-02T10:00:00", {"score": 9, "feedback": "great"}),
    ("u4", "appcues:nps_score", "2026-05-02T07:00:00", {"score": 9}),
    ("u4", "appcues:nps_score", "2026-05-02T08:00:00", {"score": 6}),
    ("u5", "appcues:nps_score", "2026-05-03T08:00:00", {"score": 9, "surveyOf": "other"}),  # another survey (below)
    ("u6", "appcues:nps_feedback", "2026-05-01T11:00:00", {"feedback": "hmm"}),
    ("u7", "appcues:nps_survey_started", "2026-04-20T11:00:00", {}),
    ("u7", "appcues:nps_survey_started", "2026-05-03T11:00:00", {}),
    ("u8", "appcues:nps_score", "2026-05-01T13:00:00", {"score": "abc"}),  # not a number: ignored
    ("u9", "appcues:nps_score", "2026-03-31T23:00:00", {"score": 7}),  # older than every day's 30 days
    ("u10", "appcues:nps_score_and_feedback", "2026-05-03T23:59:59", {"score": 0, "feedback": ""}),  # after end_time
]


@pytest.fixture
def nps(db):
    rows = []
    for user, name, when, attributes in NPS_EVENTS:
        attributes = dict(attributes)
        flow = "nps2" if attributes.pop("surveyOf", None) else "nps1"
        stamp = int(datetime.fromisoformat(when + "+00:00").timestamp() * 1000)
        rows.append({"account_id": ACCOUNT, "user_id": user, "name": name, "timestamp": stamp, "attributes": {"flowId": flow, **attributes}})
    with db.begin() as conn:
        store(conn, rows)
    return db


NPS_SPEC = {"dimensions": ["day"], "conditions": [["flow_id", "==", "nps1"]], "start_time": "2026-05-01", "end_time": "2026-05-03T20:00:00Z"}


def test_nps_rolling_figures_match_the_hand_computation(nps):
    # 05-01 looks at 04-02..05-01: u1 10 (P), u2 3 (D), u3 8 (N)            -> 1/1/1, NPS 0
    # 05-02 looks at 04-03..05-02: u1 P, u3's latest 9 (P), u4's latest 6 (D) -> 2/0/1, NPS round(33.3) = 33
    # 05-03 looks at 04-04..05-03 (to end_time): the same three              -> 2/0/1, NPS 33
    # scores submitted (valid scores in the 30 days): 3; 5 (u1, u3 x2, u4 x2); 5
    # feedbacks: u6's classic feedback; + u3's NPS 2.0 reply; the same. Started: 1, 1, 2.
    rows = run(nps, {**NPS_SPEC, "metrics": ["nps_computed_score", "nps_promoters", "nps_neutrals", "nps_detractors",
                                             "nps_respondents", "nps_survey_started", "nps_feedbacks_submitted"]})  # fmt: skip
    assert rows == [
        {"day": "2026-05-01", "nps_computed_score": 0, "nps_promoters": 1, "nps_neutrals": 1, "nps_detractors": 1,
         "nps_respondents": 3, "nps_survey_started": 1, "nps_feedbacks_submitted": 1},
        {"day": "2026-05-02", "nps_computed_score": 33, "nps_promoters": 2, "nps_neutrals": 0, "nps_detractors": 1,
         "nps_respondents": 3, "nps_survey_started": 1, "nps_feedbacks_submitted": 2},
        {"day": "2026-05-03", "nps_computed_score": 33, "nps_promoters": 2, "nps_neutrals": 0, "nps_detractors": 1,
         "nps_respondents": 3, "nps_survey_started": 2, "nps_feedbacks_submitted": 2},
    ]  # fmt: skip
    submitted = run(nps, {**NPS_SPEC, "metrics": ["nps_scores_submitted"]})
    assert [r["nps_scores_submitted"] for r in submitted] == [3, 5, 5]


def test_nps_without_respondents_is_null_and_rounds_half_away_from_zero(db):
    # 8 respondents: 1 promoter, 2 detractors, 5 neutrals -> 100 * -1/8 = -12.5 -> -13
    scores = [10, 0, 0, 7, 7, 8, 8, 7]
    with db.begin() as conn:
        store(conn, [
            {"account_id": ACCOUNT, "user_id": f"u{i}", "name": "appcues:nps_score", "timestamp": 1767225600000 + i,
             "attributes": {"flowId": "s", "score": s}} for i, s in enumerate(scores)
        ])  # fmt: skip
    spec = {"metrics": ["nps_computed_score", "nps_respondents"], "dimensions": ["day"], "conditions": [["flow_id", "in", ["s"]]]}
    assert run(db, {**spec, "start_time": "2026-01-01", "end_time": "2026-01-02"}) == [
        {"day": "2026-01-01", "nps_computed_score": -13, "nps_respondents": 8}]
    assert run(db, {**spec, "start_time": "2025-11-01", "end_time": "2025-11-02"}) == [
        {"day": "2025-11-01", "nps_computed_score": None, "nps_respondents": 0}]


def test_docs_print_the_dimension_table():
    from pathlib import Path

    from opencues.analytics_fields import markdown_table

    text = (Path(__file__).parents[2] / "docs" / "analytics.md").read_text()
    assert markdown_table() in text


def test_like_helper_agrees_with_fnmatch_on_plain_patterns():
    # the reference's LIKE is checked against a second, independent matcher
    for pattern, text in [("ab%", "abc"), ("a_c", "abc"), ("%c", "abd")]:
        assert _like(pattern, text, False) == fnmatch.fnmatchcase(text, pattern.replace("%", "*").replace("_", "?"))


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kathmandu"])
def test_exported_rows_rendered_by_the_database_equal_the_query_rows(loaded, zone):
    import io

    import orjson

    extra = [{"id": 1000 + i, "user_id": "ms", "name": "e", "timestamp": 1772841600000 + ms, "attributes": {"flowVersion": 3}}
             for i, ms in enumerate((1, 7, 99, 123, 455, 999, 86_399_999))]  # milliseconds a float could round wrongly
    with loaded.begin() as conn:
        store(conn, [{"account_id": ACCOUNT, **{k: v for k, v in e.items() if k != "id"}} for e in extra])
    spec = {"columns": ["timestamp", "user_id", "name", "flow_id", "flow_version", "source"], "timezone": zone,
            "start_time": "2026-03-05", "end_time": "2026-03-12"}  # fmt: skip
    parsed = analytics.parse_spec(spec, sync=False)
    from opencues import analytics_sql

    assert analytics_sql.compile_json_rows(loaded, ACCOUNT, parsed, limit=None) is not None  # the database renders these
    out = io.BytesIO()
    with loaded.connect() as conn:
        count = analytics.write_export(conn, loaded, ACCOUNT, parsed, out)
    exported = orjson.loads(out.getvalue())
    assert count == len(exported) and exported == reference(spec, EVENTS + extra)
    assert any(r["user_id"] == "ms" for r in exported)


@pytest.mark.parametrize("body", [
    {},
    {"limit": 9},  # the limit ends inside a window
    {"conditions": [["name", "!=", "e"], ["flow_id", "like", "f%"]]},
    {"timezone": "America/New_York", "start_time": "2026-03-07", "end_time": "2026-03-10"},  # DST change inside
])
def test_helpers_write_the_export_one_query_writes(loaded, backend, monkeypatch, body):
    """On PostgreSQL a large export is rendered in time windows by several connections
    (``export_windows``): byte for byte what one query writes, and what the reference says. Tiny
    windows here, so that the export is many windows, split and continued by id (many events in
    one millisecond)."""
    import io

    import orjson

    from opencues import export_windows

    crowded = [{"user_id": f"c{i}", "name": "e", "timestamp": 1772841600123, "attributes": {"flowId": "f9"}} for i in range(40)]
    with loaded.begin() as conn:
        store(conn, [{"account_id": ACCOUNT, **e} for e in crowded])
    monkeypatch.setattr(export_windows, "PARALLEL_MIN_ROWS", 0)
    monkeypatch.setattr(export_windows, "PG_WINDOW_BYTES", 200)
    monkeypatch.setattr(export_windows, "MIN_WINDOW_ROWS", 3)
    windowed = []
    real_write = export_windows.write
    monkeypatch.setattr(export_windows, "write", lambda *a, **k: windowed.append(1) or real_write(*a, **k))
    spec = {"columns": ["timestamp", "user_id", "name", "flow_id"], "start_time": "2026-03-01", "end_time": "2026-03-31", **body}
    parsed = analytics.parse_spec(spec, sync=False)
    outputs = []
    for helpers in (0, 3):
        out = io.BytesIO()
        with loaded.connect() as conn:
            count = analytics.write_export(conn, loaded, ACCOUNT, parsed, out, helpers=helpers)
        outputs.append(out.getvalue())
        assert count == len(orjson.loads(out.getvalue()))
    assert bool(windowed) == (backend == "postgres")  # SQLite writes one query (its helpers would be processes)
    assert outputs[0] == outputs[1]
    expected = reference(spec, EVENTS + [{"id": 2000 + i, **e} for i, e in enumerate(crowded)])
    assert orjson.loads(outputs[1]) == expected and len(expected) >= 9


def test_days_before_1970_are_bucketed_below_zero(db):
    with db.begin() as conn:  # 1969-12-31T23:30Z and 1969-12-31T12:00Z, and 1970-01-01T00:30Z
        store(conn, [{"account_id": ACCOUNT, "user_id": "u", "name": "e", "timestamp": t, "attributes": {}}
                                       for t in (-1_800_000, -43_200_000, 1_800_000)])  # fmt: skip
    spec = {"metrics": ["events"], "dimensions": ["day"], "start_time": "1969-12-31", "end_time": "1970-01-02"}
    assert run(db, spec) == [{"day": "1969-12-31", "events": 2}, {"day": "1970-01-01", "events": 1}]
    # the hourly counts put 23:30 in the hour below zero, not in the hour that begins at 1970
    by_name = {"metrics": ["events"], "dimensions": ["name"], "start_time": "1969-12-31T23:00:00Z", "end_time": "1970-01-01T00:00:00Z"}
    assert run(db, by_name) == [{"name": "e", "events": 1}]
