"""What the analytics write path costs track and imports: the same writes with and without it,
alternated in one run.

    python bench/bench_analytics_writes.py                        # SQLite and PostgreSQL
    python bench/bench_analytics_writes.py --backends sqlite --rounds 5

"With" is opencues as shipped: every event stores ``flow_id`` (``attributes.flowId``), the
partial index ``ix_events_flow_time (account_id, flow_id, timestamp)`` takes the events that
have one, ``ix_events_name_time (account_id, name, timestamp)`` takes every event (migration
0010: Studio's users-by-day for one name), and the hourly counts by name (``event_name_hours``)
are added to in the same transaction. "Without" drops both indexes and, in this process only,
turns the counts and the ``flow_id`` copy off (what the writers did before analytics existed).

- track: ``events.track`` (validation, one event per transaction: the request path minus HTTP,
  without the server's group commit — the worst case per event), ``--track`` events of realistic
  attributes (80 % carry a ``flowId``), CPU per event;
- track, grouped: ``events.track_grouped`` from ``--concurrency`` tasks on one event loop —
  what the server does with concurrent ``POST …/events`` (they share group commits);
- import: an NDJSON import job of ``--import-events`` events run in this process
  (``run_pending_jobs``), rows per CPU second.

CPU is this process's (``time.process_time``) plus, on PostgreSQL, the server backends' of
the bench database (``/proc``): both sides of the write, little disturbed by other load on
the machine. Wall rates are printed too. Median over ``--rounds`` alternations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from sqlalchemy import text  # noqa: E402

from opencues import event_counts, events, imports, jobs  # noqa: E402
from opencues.filestore import LocalFileStore  # noqa: E402
from opencues.settings import Settings  # noqa: E402
from opencues.storage import Database  # noqa: E402
from opencues.storage.schema import metadata  # noqa: E402
from opencues.worker import run_pending_jobs  # noqa: E402

ACCOUNT = "bench"
ANALYTICS_INDEXES = [ix for ix in metadata.tables["events"].indexes if ix.name in ("ix_events_flow_time", "ix_events_name_time")]
SHIPPED = {"HourCounts": event_counts.HourCounts.__call__, "record": event_counts.record,
           "events.flow_id_of": events.flow_id_of, "imports.flow_id_of": imports.flow_id_of}  # fmt: skip


def set_analytics(db: Database, on: bool) -> None:
    with db.engine.begin() as conn:
        for index in ANALYTICS_INDEXES:
            conn.execute(text(f"DROP INDEX IF EXISTS {index.name}"))
            if on:
                index.create(conn)
    event_counts.HourCounts.__call__ = SHIPPED["HourCounts"] if on else (lambda self, rows: [])
    event_counts.record = SHIPPED["record"] if on else (lambda conn, counts: None)
    events.flow_id_of = SHIPPED["events.flow_id_of"] if on else (lambda attributes: None)
    imports.flow_id_of = SHIPPED["imports.flow_id_of"] if on else (lambda attributes: None)


def payload(i: int, *, live: bool = False) -> dict:
    """An event; ``live``: timed as tracked events are, within the last hour (so a group commit's
    events share their hours), else spread over four weeks as imported history is."""
    attributes = {"_sessionId": f"s-{i // 20}", "stepId": f"step-{i % 6}", "url": "https://app.example.com/x"}
    if i % 5:
        attributes["flowId"] = f"flow-{(i * 7919) % 300}"
    names = ("appcues:step_started", "appcues:step_completed", "appcues:flow_started", "Clicked Button")
    when = f"2026-06-28T12:{i // 60 % 60:02d}:{i % 60:02d}Z" if live else f"2026-06-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z"
    return {"name": names[i % 4], "timestamp": when, "attributes": attributes}


def backend_cpu(db: Database, name: str) -> float:
    """CPU seconds of the PostgreSQL backends connected to the bench database (0 on SQLite)."""
    if not db.is_postgres:
        return 0.0
    with db.engine.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": name}).scalars().all()
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return total


def measure(db: Database, pg_name: str, fn) -> tuple[float, float]:
    """(CPU seconds: this process + the database's backends, wall seconds) of ``fn()``."""
    cpu0, back0, wall0 = time.process_time(), backend_cpu(db, pg_name), time.perf_counter()
    fn()
    return time.process_time() - cpu0 + backend_cpu(db, pg_name) - back0, time.perf_counter() - wall0


def run_backend(label: str, url: str, pg_name: str, args, work: Path) -> list[tuple]:
    settings = Settings(data_dir=work / "data", database_url=url, job_workers=0)
    db = Database(url)
    db.migrate()
    store = LocalFileStore(work / "files")
    lines = b"".join(orjson.dumps({"user_id": f"u{i % 5000}", **payload(i)}) + b"\n" for i in range(args.import_events))
    figures = {(kind, on): [] for kind in ("track", "track_grouped", "import") for on in (False, True)}
    counter = [0]

    def track_all():
        for _ in range(args.track):
            counter[0] += 1
            events.track(db, ACCOUNT, f"u{counter[0] % 5000}", payload(counter[0], live=True))

    def track_grouped_all():
        async def client(share: int) -> None:
            for _ in range(share):
                counter[0] += 1
                await events.track_grouped(db, ACCOUNT, f"u{counter[0] % 5000}", payload(counter[0], live=True))

        async def load() -> None:
            share = args.grouped // args.concurrency
            await asyncio.gather(*(client(share) for _ in range(args.concurrency)))

        asyncio.run(load())

    def import_once():
        key = f"bench/{time.monotonic_ns()}.ndjson"
        with store.writer(key) as handle:
            handle.write(lines)
        jobs.submit(db, ACCOUNT, "import_events", payload_key=key, payload_format="ndjson", file_store=store)
        assert run_pending_jobs(db, store, settings) == 1

    with db.engine.connect():  # warm-up: connections, compiled statements, the direct path
        pass
    track_all()
    track_grouped_all()
    for round_ in range(args.rounds):
        for on in (False, True) if round_ % 2 == 0 else (True, False):
            set_analytics(db, on)
            cpu, wall = measure(db, pg_name, track_all)
            figures[("track", on)].append((cpu / args.track, args.track / wall))
            grouped = args.grouped // args.concurrency * args.concurrency
            cpu, wall = measure(db, pg_name, track_grouped_all)
            figures[("track_grouped", on)].append((cpu / grouped, grouped / wall))
            cpu, wall = measure(db, pg_name, import_once)
            figures[("import", on)].append((args.import_events / cpu, args.import_events / wall))
    set_analytics(db, True)
    db.dispose()
    rows = []
    for kind in ("track", "track_grouped", "import"):
        (off_cpu, off_wall), (on_cpu, on_wall) = [
            (statistics.median(c for c, _ in figures[(kind, on)]), statistics.median(w for _, w in figures[(kind, on)]))
            for on in (False, True)
        ]
        rows.append((label, kind, off_cpu, on_cpu, off_wall, on_wall))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--track", type=int, default=2000)
    parser.add_argument("--grouped", type=int, default=10_000, help="events tracked through group commits")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent track_grouped tasks")
    parser.add_argument("--import-events", type=int, default=100_000)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "opencues-bench-analytics-writes"))
    args = parser.parse_args()
    results = []
    for backend in args.backends.split(","):
        work = Path(args.work_dir) / backend
        work.mkdir(parents=True, exist_ok=True)
        if backend == "sqlite":
            for old in work.glob("opencues.db*"):
                old.unlink()
            results += run_backend("SQLite", f"sqlite:///{work}/opencues.db", "", args, work)
        else:
            import psycopg

            name = "opencues_bench_analytics_writes"
            with psycopg.connect(args.postgres_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {name}")
            url = args.postgres_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name
            try:
                results += run_backend("PostgreSQL", url, name, args, work)
            finally:
                with psycopg.connect(args.postgres_url, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    print(f"\nmedian of {args.rounds} alternations; limit: at most 10 % slower with the analytics write path")
    print("| database | writer | without | with | CPU cost | wall rates without / with |\n|---|---|---|---|---|---|")
    for label, kind, off_cpu, on_cpu, off_wall, on_wall in results:
        if kind in ("track", "track_grouped"):
            what = "one per transaction" if kind == "track" else f"group commits, {args.concurrency} concurrent"
            print(f"| {label} | track ({what}) | {off_cpu * 1e6:.0f} µs CPU/event | "
                  f"{on_cpu * 1e6:.0f} µs | {on_cpu / off_cpu - 1:+.1%} | {off_wall:,.0f} / {on_wall:,.0f} events/s |")
        else:
            print(f"| {label} | import ({args.import_events:,} NDJSON events) | {off_cpu:,.0f} rows/CPU-s | {on_cpu:,.0f} | "
                  f"{off_cpu / on_cpu - 1:+.1%} | {off_wall:,.0f} / {on_wall:,.0f} rows/s |")


if __name__ == "__main__":
    main()
