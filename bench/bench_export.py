"""Export benchmark: events/s written by the export job, beside the database's own fastest dump.

    python bench/bench_export.py --backend sqlite --rows 1000000
    python bench/bench_export.py --backend postgres --rows 10000000 --scenarios a

Loads ``--rows`` events (``--users`` users, ~10 attributes, one nested object) once per backend
and size into ``bench/out/`` (SQLite file) or the ``opencues_bench_<rows>`` PostgreSQL database,
then rebuilds the account's attribute-key catalogue from them (the fast loaders bypass the
library); later runs reuse the data (migrated to the current schema first). Then, for each scenario — (a) all events, (b) ``flow_id ==`` one of ten
flows (~10%), (c) ``user_segment_id ==`` a 5,000-user segment (~10%) — and each format:

- ``export``: a fresh worker process submits the job and runs it through the real worker
  (query, file store with fsync, signed link, outbox mail); timed from the submission to the
  job's ``Completed``. Its peak RSS (``VmHWM``) is the worker's peak memory; on SQLite the
  largest helper process's peak (``opencues.export_windows``) is shown beside it.
- ``floor``: the same SELECT the export runs, dumped by ``sqlite3 -csv`` / ``psql -c "COPY (…)
  TO STDOUT"`` into a file. For CSV the export also runs a key pass the floor does not.
- ``raw floor``: the bare columns (name, timestamp, user_id, attributes) with the same WHERE
  and ORDER BY — what dumping the rows costs before any formatting.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

OUT = ROOT / "bench" / "out"
PG_BASE = os.environ.get("OPENCUES_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ACCOUNT = "bench"
T_START = 1_625_097_600_000  # 2021-07-01
SPAN_MS = 30 * 86_400_000
FLOWS = [f"flow-{i:02d}-df6b6ce8-9666-4e54-bbff-b0607af5b5{i:02d}" for i in range(10)]
SEGMENT = "bench-segment"
SCENARIOS = {
    "a": [],
    "b": [["flow_id", "==", FLOWS[3]]],
    "c": [["user_segment_id", "==", SEGMENT]],
}
NAMES = ["appcues:flow_started", "appcues:step_completed", "appcues:flow_completed", "Clicked Button", "appcues:nps_score"]


def settings_for(backend: str, rows: int):
    from opencues.settings import Settings

    data_dir = OUT / f"{backend}-{rows}"
    if backend == "sqlite":
        return Settings(data_dir=data_dir)
    db_name = f"opencues_bench_{rows}"
    return Settings(data_dir=data_dir, database_url=PG_BASE.rsplit("/", 1)[0] + "/" + db_name)


# --- loading -------------------------------------------------------------------------------


def generate(rows: int, users: int):
    rng = random.Random(42)
    step = SPAN_MS / rows
    for i in range(rows):
        flow = rng.randrange(10)
        attributes = {
            "flowId": FLOWS[flow],
            "flowVersion": rng.randrange(1, 20),
            "flowType": "journey" if flow % 2 else "modal",
            "stepId": f"step-{rng.randrange(1000):04d}",
            "stepType": "tooltip",
            "stepNumber": rng.randrange(8),
            "sessionId": f"s-{rng.getrandbits(48):012x}",
            "url": f"https://app.example.com/pages/{rng.randrange(500)}",
            "isTest": rng.random() < 0.01,
            "properties": {"plan": "pro" if flow % 3 else "free", "seats": rng.randrange(1, 50)},
        }
        yield (ACCOUNT, f"user-{rng.randrange(users):05d}", NAMES[i % len(NAMES)],
               int(T_START + i * step + rng.randrange(50)), orjson.dumps(attributes).decode())  # fmt: skip


def load(backend: str, rows: int, users: int) -> None:
    from opencues import accounts, attribute_keys
    from opencues.storage import open_database

    settings = settings_for(backend, rows)
    marker = settings.data_dir / "loaded.json"
    if marker.exists() and json.loads(marker.read_text()) == {"rows": rows, "users": users}:
        open_database(settings).dispose()  # data loaded by an older schema: migrate it (0002 fills the catalogue)
        return
    print(f"loading {rows:,} events into {backend} (once; reused from {settings.data_dir}) …", flush=True)
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    settings.data_dir.mkdir(parents=True)
    if backend == "postgres":
        _recreate_pg_database(settings.database_url)
    db = open_database(settings)
    accounts.create_account(db, ACCOUNT)
    started = time.monotonic()
    members = [(ACCOUNT, SEGMENT, f"user-{u:05d}") for u in random.Random(7).sample(range(users), 5_000)]
    if backend == "sqlite":
        raw = db.engine.raw_connection()
        cursor = raw.cursor()
        batch = []
        for row in generate(rows, users):
            batch.append(row)
            if len(batch) == 100_000:
                cursor.executemany("INSERT INTO events (account_id, user_id, name, timestamp, attributes) VALUES (?,?,?,?,?)", batch)
                batch.clear()
        if batch:
            cursor.executemany("INSERT INTO events (account_id, user_id, name, timestamp, attributes) VALUES (?,?,?,?,?)", batch)
        cursor.executemany("INSERT INTO segment_members (account_id, segment_id, user_id) VALUES (?,?,?)", members)
        raw.commit()
        cursor.execute("ANALYZE")
        raw.close()
    else:
        import psycopg

        with psycopg.connect(_libpq(settings.database_url)) as conn:
            with conn.cursor() as cur:
                with cur.copy("COPY events (account_id, user_id, name, timestamp, attributes) FROM STDIN") as copy:
                    for row in generate(rows, users):
                        copy.write_row(row)
                cur.executemany("INSERT INTO segment_members (account_id, segment_id, user_id) VALUES (%s,%s,%s)", members)
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
    print(f"loaded in {time.monotonic() - started:.0f}s", flush=True)
    started = time.monotonic()
    with db.begin() as conn:
        attribute_keys.rebuild(conn, ACCOUNT)
    db.dispose()
    print(f"attribute-key catalogue rebuilt in {time.monotonic() - started:.0f}s", flush=True)
    marker.write_text(json.dumps({"rows": rows, "users": users}))


def _libpq(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def _recreate_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


# --- one export in a fresh process ---------------------------------------------------------


def run_one(backend: str, rows: int, scenario: str, fmt: str) -> None:
    """Child process: submit the job and run it through the worker; print the timing."""
    from opencues import exports, jobs, worker
    from opencues.filestore import open_file_store
    from opencues.storage import Database

    settings = settings_for(backend, rows)
    db = Database(settings.resolved_database_url)
    store = open_file_store(settings)
    helper_peaks_kb = _record_helper_peaks()
    body = {"email": "bench@example.com", "format": fmt, "conditions": SCENARIOS[scenario],
            "start_time": T_START, "end_time": T_START + SPAN_MS + 1000}  # fmt: skip
    started = time.monotonic()
    request = exports.validate_request(body)
    submitted = jobs.submit(db, ACCOUNT, exports.JOB_KIND, params=exports.job_params(request, "http://bench"))
    worker.run_pending_jobs(db, store, settings, timeout=3600)
    elapsed = time.monotonic() - started
    done = next(e for e in jobs.get_job(db, ACCOUNT, submitted.job_id)["events"] if e["name"] == "Completed")
    key = exports.file_key(ACCOUNT, submitted.job_id, request)
    size = store.size(key)
    store.delete(key)
    print(json.dumps({"seconds": elapsed, "rows": done["attributes"]["rows_exported"], "bytes": size,
                      "peak_kb": _peak_kb("self"), "helper_kb": max(helper_peaks_kb, default=0)}))  # fmt: skip


def _peak_kb(pid) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))


def _record_helper_peaks() -> list[int]:
    """SQLite: each export helper's peak RSS, read just before the worker stops it. (Its
    ``ru_maxrss`` would not do: Linux starts a child's maximum at its parent's size at the fork.)"""
    from opencues import export_windows

    peaks: list[int] = []
    close = export_windows._ProcessHelper.close

    def recording_close(helper) -> None:
        peaks.append(_peak_kb(helper.process.pid))
        close(helper)

    export_windows._ProcessHelper.close = recording_close
    return peaks


def measure_export(args, scenario: str, fmt: str) -> dict:
    command = [sys.executable, __file__, "--backend", args.backend, "--rows", str(args.rows), "--run-one", scenario, fmt]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"export run failed: {command}")
    result = json.loads(output.decode().strip().splitlines()[-1])
    result["cpu"] = usage.ru_utime + usage.ru_stime
    # The child's own high-water mark (VmHWM): wait4's ru_maxrss would include this parent's
    # memory at fork time, which Linux carries over into the child's maximum.
    result["peak_rss_mb"] = result["peak_kb"] / 1024
    result["helper_rss_mb"] = result["helper_kb"] / 1024
    return result


# --- floors --------------------------------------------------------------------------------


def floor_sql(args, scenario: str, fmt: str, raw: bool) -> str:
    """The export's own SELECT (or the bare columns), with literal values for the CLI tools."""
    from opencues import exports
    from opencues.storage import Database
    from opencues.storage.schema import events

    settings = settings_for(args.backend, args.rows)
    db = Database(settings.resolved_database_url)
    body = {"email": "bench@example.com", "format": fmt, "conditions": SCENARIOS[scenario],
            "start_time": T_START, "end_time": T_START + SPAN_MS + 1000}  # fmt: skip
    request = exports.validate_request(body)
    with db.connect() as conn:
        if raw:
            columns = [events.c.name, events.c.timestamp, events.c.user_id, events.c.attributes]
            statement = exports.export_statement(db, ACCOUNT, request, columns)
        elif fmt == "csv":
            statement, _ = exports.csv_statement(conn, db, ACCOUNT, request)
        else:
            statement = exports.json_statement(db, ACCOUNT, request)
        compiled = statement.compile(dialect=db.engine.dialect, compile_kwargs={"render_postcompile": True})
        if db.is_sqlite:
            text = str(compiled)
            for name in compiled.positiontup:
                value = compiled.params[name]
                text = text.replace("?", repr(value) if isinstance(value, str) else str(value), 1)
            return text
        # Bench only: apply SQLAlchemy's bind processors (JSONB paths) as execution would.
        processors = compiled._bind_processors
        params = {k: processors[k](v) if k in processors else v for k, v in compiled.params.items()}
        cursor = __import__("psycopg").ClientCursor(conn.connection.driver_connection)
        return cursor.mogrify(str(compiled), params)


def measure_floor(args, scenario: str, fmt: str, raw: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the dumping process: the whole query on SQLite, only
    psql's share on PostgreSQL, whose server does the work)."""
    settings = settings_for(args.backend, args.rows)
    sql = floor_sql(args, scenario, fmt, raw)
    target = OUT / "floor.out"
    started = time.monotonic()
    with open(target, "wb") as out:
        if args.backend == "sqlite":
            command = ["sqlite3", "-csv", str(settings.data_dir / "opencues.db"), sql]
        else:
            copy = f"COPY ({sql}) TO STDOUT" + (" (FORMAT csv)" if fmt == "csv" or raw else "")
            command = ["psql", "-X", "-q", _libpq(settings.database_url), "-c", copy]
        process = subprocess.Popen(command, stdout=out)
        _, status, usage = os.wait4(process.pid, 0)
        if status != 0:
            raise SystemExit(f"floor failed: {command[:3]}")
        out.flush()
        os.fsync(out.fileno())
    elapsed = time.monotonic() - started
    target.unlink()
    return elapsed, usage.ru_utime + usage.ru_stime


def explain(args) -> None:
    """Print the plans of the three scenarios' JSON queries (for docs/exports.md); the CSV
    queries select other columns from the same plan."""
    settings = settings_for(args.backend, args.rows)
    for scenario in SCENARIOS:
        sql = floor_sql(args, scenario, "json", raw=False)
        print(f"--- ({scenario}) {SCENARIOS[scenario]}")
        if args.backend == "sqlite":
            subprocess.run(["sqlite3", str(settings.data_dir / "opencues.db"), "EXPLAIN QUERY PLAN " + sql], check=True)
        else:
            # As the export's row pass runs it: a plain query, streamed (parallel plans allowed).
            subprocess.run(["psql", "-X", "-q", _libpq(settings.database_url), "-c", "EXPLAIN " + sql], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--scenarios", default="abc")
    parser.add_argument("--formats", default="csv,json")
    parser.add_argument("--explain", action="store_true", help="print the query plans and exit")
    parser.add_argument("--run-one", nargs=2, metavar=("SCENARIO", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        run_one(args.backend, args.rows, *args.run_one)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    load(args.backend, args.rows, args.users)
    if args.explain:
        explain(args)
        return
    print(f"{args.backend}, {args.rows:,} events; seconds (wall / CPU of the process)")
    print(f"{'case':<10}{'rows':>11}{'export':>14}{'events/s':>10}{'floor':>13}{'ratio':>6}{'raw floor':>13}{'peak MB':>8}{'helper':>7}{'MB out':>7}")
    for scenario in args.scenarios:
        for fmt in args.formats.split(","):
            result = measure_export(args, scenario, fmt)
            floor, floor_cpu = measure_floor(args, scenario, fmt)
            raw_floor, raw_cpu = measure_floor(args, scenario, fmt, raw=True)
            rate = result["rows"] / result["seconds"]
            print(f"({scenario}) {fmt:<6}{result['rows']:>11,}{result['seconds']:>8.2f}/{result['cpu']:<5.1f}{rate:>10,.0f}"
                  f"{floor:>7.2f}/{floor_cpu:<5.1f}{result['seconds'] / floor:>6.2f}{raw_floor:>7.2f}/{raw_cpu:<5.1f}"
                  f"{result['peak_rss_mb']:>8.0f}{result['helper_rss_mb']:>7.0f}{result['bytes'] / 1e6:>7.0f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
