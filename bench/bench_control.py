"""Control-API benchmark: how long an account reset, a snapshot and a restore take at a size.

    python bench/bench_control.py                                   # SQLite, 100,000 events
    python bench/bench_control.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python bench/bench_control.py --events 1000000

The target (issue: opencues in other people's test suites) is an account reset in under a second
at 100,000 events. Each run loads ``--events`` events (and a profile per user) into one account of
a fresh database, then times, through the library the ``/-/`` routes call:
``create_snapshot`` of that account, ``reset_account`` (its data gone, its keys kept) and
``restore_snapshot`` (everything back exactly), checking the event count after each. The median of
``--rounds`` rounds is printed beside the target. With ``--database-url`` the database is
``<url's server>/opencues_bench_control`` (dropped and re-created).

``--startup N`` times, instead, what a user's test suite waits for (the plugin's own functions):

- ``opencues serve --test`` from exec to ``/-/ready`` answering 200 — the ``opencues_server``
  fixture's set-up (``pytest_plugin.launch`` + ``wait_ready``) — in wall time and in the server
  process's CPU time (the steadier figure on a busy machine), median of N;
- the ephemeral database: a copy of the cached migrated template vs running the migrations;
- the ``appcues`` fixture per test: a fresh account with a key, its ``Client``, and the account
  deleted with its data afterwards (two ``/-/`` calls), median of 50.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from opencues import accounts, control  # noqa: E402
from opencues.settings import Settings  # noqa: E402
from opencues.storage import open_database  # noqa: E402
from opencues.storage.schema import events, profiles  # noqa: E402

ACCOUNT = "bench"
RESET_TARGET_SECONDS = 1.0


def fresh_postgres(url: str) -> str:
    base = "postgresql+psycopg://" + url.split("://", 1)[1]
    admin = create_engine(base.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "opencues_bench_control" WITH (FORCE)'))
        conn.execute(text('CREATE DATABASE "opencues_bench_control"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + "/opencues_bench_control"


def load(db, count: int, users: int) -> None:
    with db.begin() as conn:
        for start in range(0, count, 50_000):
            conn.execute(events.insert(), [
                {"account_id": ACCOUNT, "user_id": f"u{i % users}", "name": "Clicked", "timestamp": 1_700_000_000_000 + i,
                 "attributes": {"n": i, "plan": "pro"}}
                for i in range(start, min(count, start + 50_000))
            ])  # fmt: skip
        conn.execute(profiles.insert(), [
            {"account_id": ACCOUNT, "user_id": f"u{i}", "attributes": {"plan": "pro"}, "created_at": 0, "updated_at": 0}
            for i in range(users)
        ])  # fmt: skip


def count_events(db) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(events).where(events.c.account_id == ACCOUNT)).scalar_one()


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def timed_cpu(fn, cpu: list) -> float:
    """Wall time of ``fn``; its CPU time (this process: all of SQLite's work) appended to ``cpu``."""
    started = time.process_time()
    wall = timed(fn)
    cpu.append(time.process_time() - started)
    return wall


STARTUP_TARGET_SECONDS = 1.0


def _process_cpu_seconds(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, every thread


def startup(runs: int) -> None:
    import shutil

    from opencues import pytest_plugin
    from opencues.storage import Database, sqlite_template

    walls, cpus = [], []
    for _ in range(runs):
        started = time.perf_counter()
        server = pytest_plugin.wait_ready(pytest_plugin.launch())
        walls.append(time.perf_counter() - started)
        cpus.append(_process_cpu_seconds(server.process.pid))
        if len(walls) < runs:
            server.stop()
    print(f"serve --test exec -> ready (the opencues_server fixture): wall median {statistics.median(walls):.3f} s "
          f"(runs: {', '.join(f'{w:.2f}' for w in walls)}); server CPU median {statistics.median(cpus):.3f} s")  # fmt: skip
    print(f"target ready < {STARTUP_TARGET_SECONDS:.1f} s: {'MET' if statistics.median(walls) < STARTUP_TARGET_SECONDS else 'MISSED'}")

    per_test = []
    for _ in range(50):
        started = time.perf_counter()
        account = server.control.create_account()
        client = server.client(account)
        client.close()
        server.control.delete_account(account["id"])
        per_test.append(time.perf_counter() - started)
    server.stop()
    print(f"appcues fixture per test (create account + key, delete it): median {statistics.median(per_test) * 1000:.1f} ms, "
          f"p90 {sorted(per_test)[int(len(per_test) * 0.9)] * 1000:.1f} ms")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="opencues-bench-startup-") as workdir:
        copies, migrations = [], []
        sqlite_template.create_from_template(Path(workdir) / "warm")  # the template exists from here on
        for i in range(5):
            copies.append(timed(lambda: sqlite_template.create_from_template(Path(workdir) / f"copy{i}")))

            def migrate():
                db = Database(f"sqlite:///{workdir}/migrated{i}/opencues.db")
                db.migrate()
                db.dispose()

            migrations.append(timed(migrate))
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"ephemeral database: template copy median {statistics.median(copies) * 1000:.1f} ms vs migrations "
          f"{statistics.median(migrations) * 1000:.1f} ms (in this process: Alembic already imported after the first)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: SQLite in a temporary directory)")
    parser.add_argument("--startup", type=int, metavar="N", help="time test-server start-up and the fixtures instead (N starts)")
    args = parser.parse_args()
    if args.startup:
        startup(args.startup)
        return

    with tempfile.TemporaryDirectory(prefix="opencues-bench-control-") as workdir:
        url = fresh_postgres(args.database_url) if args.database_url else None
        db = open_database(Settings(data_dir=Path(workdir), database_url=url, job_workers=0))
        accounts.create_account(db, ACCOUNT)
        accounts.create_key(db, ACCOUNT)
        print(f"{db.dialect}: {args.events:,} events, {args.users:,} profiles")
        times: dict[str, list[float]] = {"snapshot": [], "reset": [], "restore": []}
        cpu: dict[str, list[float]] = {"snapshot": [], "reset": [], "restore": []}
        for round_ in range(args.rounds):
            load(db, args.events, args.users)
            assert count_events(db) == args.events
            name = f"round{round_}"
            times["snapshot"].append(timed_cpu(lambda: control.create_snapshot(db, name, ACCOUNT), cpu["snapshot"]))
            times["reset"].append(timed_cpu(lambda: control.reset_account(db, ACCOUNT), cpu["reset"]))
            assert count_events(db) == 0, "reset left events behind"
            times["restore"].append(timed_cpu(lambda: control.restore_snapshot(db, name), cpu["restore"]))
            assert count_events(db) == args.events, "restore is not exact"
            control.reset_account(db, ACCOUNT)
            control.delete_snapshot(db, name)
        db.dispose()
    for step, samples in times.items():
        print(f"{step:>8}: median {statistics.median(samples):6.3f} s  (runs: {', '.join(f'{s:.3f}' for s in samples)}); "
              f"CPU of this process median {statistics.median(cpu[step]):6.3f} s")  # fmt: skip
    reset = statistics.median(times["reset"])
    print(f"target reset < {RESET_TARGET_SECONDS:.1f} s: {'MET' if reset < RESET_TARGET_SECONDS else 'MISSED'}")


if __name__ == "__main__":
    main()
