"""Wide CSV exports: the database's cells against ``opencues.export_cells`` (Python).

    python bench/bench_export_wide.py --backend sqlite --rows 2000 --keys 30,100,300,900

Stores ``--rows`` events of ``--keys`` attributes each (ints and short strings) in a scratch
database (``bench/out/wide.db`` or the ``opencues_bench_wide`` PostgreSQL database), then writes
the CSV export twice, the worker alone: every column rendered by the database, then every column
rendered in Python. Sets ``exports.MAX_DATABASE_CELLS``, where one gives way to the other.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opencues import events as events_lib  # noqa: E402
from opencues import exports  # noqa: E402
from opencues.storage import Database  # noqa: E402

PG_BASE = os.environ.get("OPENCUES_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def database(backend: str) -> Database:
    if backend == "sqlite":
        path = ROOT / "bench" / "out" / "wide.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        return Database(f"sqlite:///{path}")
    from sqlalchemy import create_engine, text

    admin = create_engine("postgresql+psycopg://" + PG_BASE.split("://", 1)[1], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS opencues_bench_wide WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE opencues_bench_wide"))
    admin.dispose()
    return Database("postgresql+psycopg://" + PG_BASE.split("://", 1)[1].rsplit("/", 1)[0] + "/opencues_bench_wide")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--keys", default="30,100,300,900")
    args = parser.parse_args()
    request = exports.validate_request({"email": "bench@example.com", "format": "csv", "conditions": [], "start_time": 0})
    print(f"{args.backend}, {args.rows:,} events; seconds for the CSV export (key pass included)")
    for keys in (int(k) for k in args.keys.split(",")):
        db = database(args.backend)
        db.migrate()
        with db.begin() as conn:
            for row in range(args.rows):
                events_lib.insert_event(conn, "acct1", "u1", "ev", 1_000 + row, {f"k{i:04d}": i if i % 2 else f"s{i}" for i in range(keys)})
        timings = []
        for limit in (keys, 0):  # the database renders every column; then Python does
            exports.MAX_DATABASE_CELLS = limit
            started = time.perf_counter()
            exports.write_export(db, "acct1", request, io.BytesIO())
            timings.append(time.perf_counter() - started)
        db.dispose()
        print(f"{keys:>5} keys: database {timings[0]:7.2f}   Python {timings[1]:7.2f}   ({timings[0] / timings[1]:.1f}x)", flush=True)


if __name__ == "__main__":
    main()
