"""Analytics benchmark: five CLI-style queries and a 1M-row export, beside hand-written SQL.

    python bench/bench_analytics.py --events 1000000                       # SQLite and PostgreSQL
    python bench/bench_analytics.py --events 10000000 --backends sqlite
    python bench/bench_analytics.py --reuse                                # keep the loaded data

Data: ``--events`` events of 50,000 users over 90 days (2026-06-01 to 2026-08-30 UTC), generated
inside the database (a recursive CTE on SQLite, ``generate_series`` on PostgreSQL) into a freshly
migrated opencues database (``events.flow_id`` filled as the writers fill it), the event indexes
dropped during the load and rebuilt after it, the hourly counts by name rebuilt
(``event_counts.rebuild``), then ``ANALYZE``. ``--load-only`` stops there; ``--reuse`` keeps it. The names are those of spec §9.7 in a realistic mix (steps 58 %, flows 23 %,
sessions 9 %, NPS 6 %, errors 4 %); flow events carry ``flowId`` (300 flows), ``stepId`` and
``_sessionId``; NPS events ``flowId`` (10 surveys), ``score`` 0–10 and ``feedback``.

Queries (library calls, ``opencues.analytics.run_query``, rows rendered; median of ``--runs``):

1. ``events`` and ``users`` by ``day`` for one ``flow_id``, 30 days
2. top 5 ``name`` by ``events`` over the 90 days (``rank_n``)
3. step drop-off: ``users`` by ``step_id`` for one flow, 30 days
4. ``nps_computed_score`` (+ respondents) by ``day`` for one survey, 30 days (rolling 30-day rule)
5. an export of 1,000,000 raw rows (``timestamp``, ``user_id``, ``name``) to a JSON file, as the
   export job writes it (``--export-helpers``, default the setting's: on PostgreSQL, time windows
   rendered by that many connections side by side)
6. ``events`` and ``users`` by ``day`` for one ``name`` (``appcues:session_started``, 9 % of the
   events), 30 days: Studio's analytics chart (added after the others; run before the export)

Each query's floor is the fastest hand-written SQL found for the same answer on the same database
(UTC day arithmetic instead of the bucket table, no zero-fill; for query 2 the same sum over
``event_name_hours``), fetched with the DBAPI cursor, in the same run. Targets: queries ≤ 1 s and ≤ 1.5× the floor; the export ≥ 250,000 rows/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from opencues import analytics, event_counts  # noqa: E402
from opencues.settings import Settings  # noqa: E402
from opencues.storage import Database  # noqa: E402
from opencues.storage.schema import events as events_table  # noqa: E402

ACCOUNT = "bench"
T0 = 1780272000000  # 2026-06-01T00:00:00Z
SPAN = 90 * 86_400_000
USERS = 50_000
FLOWS = 300
SURVEYS = 10

# One generated row per i in [0, N): hashes of i pick the user, the name class and the ids.
_CLASS = """CASE
  WHEN k < 24 THEN 'appcues:flow_started' WHEN k < 40 THEN 'appcues:flow_completed'
  WHEN k < 46 THEN 'appcues:flow_skipped' WHEN k < 106 THEN 'appcues:step_started'
  WHEN k < 156 THEN 'appcues:step_completed' WHEN k < 162 THEN 'appcues:step_skipped'
  WHEN k < 166 THEN 'appcues:step_error' WHEN k < 168 THEN 'appcues:step_child_error'
  WHEN k < 170 THEN 'appcues:v2:step_error' WHEN k < 188 THEN 'appcues:session_started'
  WHEN k < 192 THEN 'appcues:nps_survey_started' WHEN k < 195 THEN 'appcues:nps_score'
  WHEN k < 196 THEN 'appcues:nps_feedback' ELSE 'appcues:nps_score_and_feedback' END"""


def _attributes(obj: str) -> str:
    """The attributes per name class; ``obj`` is json_object (SQLite) or jsonb_build_object."""
    flow = "'flow-' || (h2 % 300)"
    survey = "'nps-' || (h2 % 10)"
    step = "'step-' || ((h1 / 100) % 6)"
    session = "'sess-' || u || '-' || (i * 90 / n)"
    score = "((h2 / 7) % 11)"
    return f"""CASE
  WHEN k < 46 THEN {obj}('flowId', {flow}, 'flowVersion', 3, '_sessionId', {session})
  WHEN k < 162 THEN {obj}('flowId', {flow}, 'stepId', {step}, 'stepType', 'modal', '_sessionId', {session})
  WHEN k < 170 THEN {obj}('flowId', {flow}, 'stepId', {step}, 'message', 'Element not found', 'url', 'https://app.example.com/x', '_sessionId', {session})
  WHEN k < 188 THEN {obj}('_sessionId', {session})
  WHEN k < 192 THEN {obj}('flowId', {survey}, '_sessionId', {session})
  WHEN k < 195 THEN {obj}('flowId', {survey}, 'score', {score}, '_sessionId', {session})
  WHEN k < 196 THEN {obj}('flowId', {survey}, 'feedback', 'Great product', '_sessionId', {session})
  ELSE {obj}('flowId', {survey}, 'score', {score}, 'feedback', 'Could be faster', '_sessionId', {session}) END"""


# ``events.flow_id``: the attributes' flowId, as the writers store it.
_FLOW_ID = "CASE WHEN k < 170 THEN 'flow-' || (h2 % 300) WHEN k < 188 THEN NULL ELSE 'nps-' || (h2 % 10) END"


def _select_rows(source: str, obj: str, n: int) -> str:
    return f"""
SELECT '{ACCOUNT}', 'user-' || u, {_CLASS}, {T0} + i * {SPAN} / {n}, {_attributes(obj)}, {_FLOW_ID}
FROM (SELECT i, n, h1, h2, h1 % 200 AS k, (h2 / 11) % {USERS} AS u
      FROM (SELECT i, {n} AS n, (i * 2654435761) % 2147483647 AS h1, (i * 40503 + 12345) % 1000003 AS h2 FROM {source}) x) y"""


def load(db: Database, n: int) -> float:
    started = time.perf_counter()
    secondary = [ix for ix in events_table.indexes]
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM events"))
        conn.execute(text("DELETE FROM event_name_hours"))
        for ix in secondary:
            conn.execute(text(f"DROP INDEX IF EXISTS {ix.name}"))
    with db.engine.begin() as conn:
        if db.is_sqlite:
            source = f"(WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < {n - 1}) SELECT i FROM c)"
            conn.execute(text("INSERT INTO events (account_id, user_id, name, timestamp, attributes, flow_id)" + _select_rows(source, "json_object", n)))
        else:
            source = f"generate_series(0, {n - 1}::bigint) AS g(i)"
            conn.execute(text("INSERT INTO events (account_id, user_id, name, timestamp, attributes, flow_id)" + _select_rows(source, "jsonb_build_object", n)))
    with db.engine.begin() as conn:
        for ix in secondary:
            ix.create(conn)
        event_counts.rebuild(conn)  # written without the writers' hourly counts
    if db.is_sqlite:
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE events"))
    return time.perf_counter() - started


def _day(d: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime((T0 + d * 86_400_000) / 1000))


def queries(pg: bool) -> list[tuple[str, dict, str]]:
    """(label, spec, floor SQL). The floors read the same tables through the same indexes."""
    flow = "flow_id"
    step = "(attributes ->> 'stepId')" if pg else "json_extract(attributes, '$.stepId')"
    score = "(attributes ->> 'score')::int" if pg else "json_extract(attributes, '$.score')"
    w30 = (T0 + 30 * 86_400_000, T0 + 60 * 86_400_000)
    w90 = (T0, T0 + SPAN)
    start30, end30 = _day(30), _day(60)
    q1 = ({"metrics": ["events", "users"], "dimensions": ["day"], "conditions": [["flow_id", "==", "flow-7"]],
           "start_time": start30, "end_time": end30},
          f"SELECT timestamp / 86400000 AS d, count(*), count(DISTINCT user_id) FROM events WHERE account_id = '{ACCOUNT}' "
          f"AND {flow} = 'flow-7' AND timestamp >= {w30[0]} AND timestamp < {w30[1]} GROUP BY d ORDER BY d")
    q2 = ({"metrics": ["events"], "dimensions": ["name"], "rank_n": {"n": 5, "direction": "top", "dimension": "name"},
           "start_time": _day(0), "end_time": _day(90)},
          # The hourly counts (the window is whole hours: no partial hours to count from events).
          f"SELECT name, sum(events) AS c FROM event_name_hours WHERE account_id = '{ACCOUNT}' AND hour >= {w90[0] // 3_600_000} "
          f"AND hour < {w90[1] // 3_600_000} GROUP BY name ORDER BY c DESC, name LIMIT 5")
    q3 = ({"metrics": ["users"], "dimensions": ["step_id"], "conditions": [["flow_id", "==", "flow-7"]],
           "start_time": start30, "end_time": end30},
          f"SELECT coalesce({step}, ''), count(DISTINCT user_id) FROM events WHERE account_id = '{ACCOUNT}' "
          f"AND {flow} = 'flow-7' AND timestamp >= {w30[0]} AND timestamp < {w30[1]} GROUP BY 1")
    lookback = w30[0] - 29 * 86_400_000
    least = "least" if pg else "min"
    q4_floor = f"""
WITH s AS (SELECT timestamp / 86400000 AS d, user_id, {score} AS score, timestamp, id FROM events
           WHERE account_id = '{ACCOUNT}' AND {flow} = 'nps-2' AND timestamp >= {lookback} AND timestamp < {w30[1]}
             AND name IN ('appcues:nps_score', 'appcues:nps_score_and_feedback')),
l AS (SELECT d, score, lead(d) OVER (PARTITION BY user_id ORDER BY d) AS nd FROM
        (SELECT d, user_id, score, row_number() OVER (PARTITION BY user_id, d ORDER BY timestamp DESC, id DESC) AS rn FROM s) r
      WHERE rn = 1)
SELECT x.d, round(100.0 * (sum(CASE WHEN score >= 9 THEN 1 ELSE 0 END) - sum(CASE WHEN score <= 6 THEN 1 ELSE 0 END)) / count(*)), count(*)
FROM (SELECT DISTINCT d FROM s WHERE d >= {w30[0] // 86_400_000}) x
JOIN l ON l.d <= x.d AND x.d <= {least}(l.d + 29, coalesce(l.nd - 1, l.d + 29))
GROUP BY x.d ORDER BY x.d"""
    q4 = ({"metrics": ["nps_computed_score", "nps_respondents"], "dimensions": ["day"],
           "conditions": [["flow_id", "==", "nps-2"]], "start_time": start30, "end_time": end30}, q4_floor)
    q6 = ({"metrics": ["events", "users"], "dimensions": ["day"], "conditions": [["name", "==", "appcues:session_started"]],
           "start_time": start30, "end_time": end30},
          f"SELECT timestamp / 86400000 AS d, count(*), count(DISTINCT user_id) FROM events WHERE account_id = '{ACCOUNT}' "
          f"AND name = 'appcues:session_started' AND timestamp >= {w30[0]} AND timestamp < {w30[1]} GROUP BY d ORDER BY d")
    return [("1 events+users by day, one flow, 30 d", *q1), ("2 top 5 names by events, 90 d (rank_n)", *q2),
            ("3 step drop-off: users by step_id, one flow, 30 d", *q3), ("4 nps_computed_score by day, one survey, 30 d", *q4),
            ("6 events+users by day, one name, 30 d", *q6)]


def median_time(fn, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def run_backend(name: str, url: str, args) -> list[tuple]:
    db = Database(url)
    db.migrate()
    with db.engine.connect() as conn:
        have = conn.execute(text(f"SELECT count(*) FROM events WHERE account_id = '{ACCOUNT}'")).scalar_one()
    if not (args.reuse and have == args.events):
        seconds = load(db, args.events)
        print(f"[{name}] loaded {args.events:,} events in {seconds:.1f} s ({args.events / seconds:,.0f}/s)", flush=True)
    results = []
    if args.load_only:
        db.dispose()
        return results
    for label, spec_body, floor_sql in queries(db.is_postgres):
        spec = analytics.parse_spec(spec_body)
        ours, result = median_time(lambda: analytics.run_query(db, ACCOUNT, spec), args.runs)

        def floor():
            with db.engine.connect() as conn:
                return conn.exec_driver_sql(floor_sql).fetchall()

        floor_s, floor_rows = median_time(floor, args.runs)
        results.append((name, label, ours, floor_s, len(result.rows), len(floor_rows)))
        print(f"[{name}] {label}: {ours * 1000:.0f} ms, floor {floor_s * 1000:.0f} ms, {ours / floor_s:.2f}x "
              f"({len(result.rows)} rows / floor {len(floor_rows)})", flush=True)
    # 5: the export
    export_days = max(1, round(1_000_000 / args.events * 90 + 0.5))
    spec = analytics.parse_spec({"columns": ["timestamp", "user_id", "name"], "start_time": _day(10),
                                 "end_time": _day(10 + export_days), "limit": 1_000_000}, sync=False)  # fmt: skip

    def export():
        with tempfile.NamedTemporaryFile(dir=args.work_dir) as out, db.connect() as conn:
            return analytics.write_export(conn, db, ACCOUNT, spec, out, helpers=args.export_helpers)

    def export_floor():
        # the same rows' plain columns through the driver, nothing rendered or written
        with db.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute(f"SELECT timestamp, user_id, name FROM events WHERE account_id = '{ACCOUNT}' AND timestamp >= "
                           f"{spec.start_ms} AND timestamp < {spec.end_ms} ORDER BY timestamp, id LIMIT 1000000")
            count = 0
            while batch := cursor.fetchmany(10_000):
                count += len(batch)
            return count

    export_runs = max(1, min(args.runs, 3))
    seconds, rows = median_time(export, export_runs)
    floor_s, _ = median_time(export_floor, export_runs)
    results.append((name, f"5 export of {rows:,} raw rows", seconds, floor_s, rows, None))
    print(f"[{name}] export: {rows:,} rows in {seconds:.2f} s = {rows / seconds:,.0f} rows/s (median of {export_runs}); "
          f"floor (driver fetch of the plain columns) {floor_s:.2f} s", flush=True)
    db.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="server URL; the database --postgres-database is created on it")
    parser.add_argument("--postgres-database", default="opencues_bench_analytics")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "opencues-bench-analytics"))
    parser.add_argument("--export-helpers", type=int, default=Settings().export_helpers,
                        help="helpers of the export, as the job runs it (OPENCUES_EXPORT_HELPERS; 0: one query)")
    parser.add_argument("--reuse", action="store_true", help="keep data already loaded with the same --events")
    parser.add_argument("--load-only", action="store_true", help="load (unless reused) and stop: no queries")
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    results = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            results += run_backend("SQLite", f"sqlite:///{args.work_dir}/opencues.db", args)
        else:
            server = args.postgres_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
            admin = create_engine(server + "/postgres", isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": args.postgres_database}).first()
                if not exists:
                    conn.execute(text(f'CREATE DATABASE "{args.postgres_database}"'))
            admin.dispose()
            results += run_backend("PostgreSQL", f"{server}/{args.postgres_database}", args)
    print(f"\n{args.events:,} events, median of {args.runs}; targets: queries <= 1 s and <= 1.5x floor, export >= 250,000 rows/s")
    print("| database | query | opencues | floor | ratio |\n|---|---|---|---|---|")
    for name, label, ours, floor, rows, _ in results:
        if label.startswith("5 "):
            print(f"| {name} | {label} | {ours:.2f} s = {rows / ours:,.0f} rows/s | {floor:.2f} s | {ours / floor:.2f}× |")
        else:
            print(f"| {name} | {label} | {ours * 1000:.0f} ms | {floor * 1000:.0f} ms | {ours / floor:.2f}× |")


if __name__ == "__main__":
    main()
