"""What metrics and the request journal cost a track, measured in one run.

    python bench/bench_metrics.py [--requests 20000] [--rounds 5] [--database-url postgresql://…]

Calls the app directly (no HTTP server, no load generator, so the CPU counted is the app's own)
with ``--requests`` track requests, 16 at a time, in each of these configurations:

* ``metrics off`` — ``OPENCUES_METRICS=off``: the baseline;
* ``metrics on`` — the default: every request counted and timed (``opencues.web.observe``);
* ``metrics on, multiprocess`` — the same as ``serve --workers N`` runs it
  (``PROMETHEUS_MULTIPROC_DIR``: every value written to a memory-mapped file); run in a child
  process, as ``prometheus_client`` picks its storage when first imported;
* ``journal on`` — metrics on and ``OPENCUES_JOURNAL=on``: every request also becomes a journal
  row (its writer thread's CPU counts: the process's CPU time is measured).

The configurations alternate ``--rounds`` times and each one's median CPU per request counts (on a
busy machine single rounds scatter by ±25 %). A CPU-bound server's rate is inversely proportional
to its CPU per request, so ``off / on`` is the rate a configuration keeps. Targets: metrics on
keep ≥ 90 % of track's rate without (issue 14), the journal costs ≤ 30 % of it (issue 11).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ACCOUNT = "bench"
CONNECTIONS = 16
TARGETS = {"metrics on": 0.90, "metrics on, multiprocess": 0.90, "journal on": 0.70}
CONFIGS = {
    "metrics off": {"metrics": False},
    "metrics on": {"metrics": True},
    "journal on": {"metrics": True, "journal": "on"},
}


def fresh_database(workdir: Path, database_url: str | None):
    """A migrated database with one account and key: a file under ``workdir``, or a new database
    on the given PostgreSQL server (and a function that drops it)."""
    from sqlalchemy import create_engine, text

    from opencues import accounts
    from opencues.settings import Settings
    from opencues.storage import open_database

    drop = lambda: None  # noqa: E731
    if database_url:
        name = f"opencues_bench_metrics_{uuid.uuid4().hex[:8]}"
        admin = create_engine("postgresql+psycopg://" + database_url.split("://", 1)[1], isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        database_url = database_url.rsplit("/", 1)[0] + "/" + name

        def drop():
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    settings = Settings(data_dir=workdir / "data", database_url=database_url, job_workers=0)
    db = open_database(settings)
    accounts.create_account(db, ACCOUNT)
    key = accounts.create_key(db, ACCOUNT)
    return settings, db, (key["key"], key["secret"]), drop


def cpu_per_track(app, auth: tuple[str, str], count: int) -> float:
    """Microseconds of this process's CPU per track request, ``count`` requests 16 at a time."""
    headers = [(b"host", b"bench"), (b"content-type", b"application/json"), (b"user-agent", b"bench"),
               (b"authorization", b"Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()))]  # fmt: skip

    async def request(n: int) -> None:
        body = json.dumps({"name": "Clicked button", "timestamp": "2021-08-10T09:41:00.000-04:00",
                           "attributes": {"button": "Go Home", "n": n}}).encode()  # fmt: skip
        path = f"/v2/accounts/{ACCOUNT}/users/u{n % 5000}/events"
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
                 "headers": [*headers, (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("bench", 80)}  # fmt: skip
        sent = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        assert sent[0]["status"] == 200, sent

    async def run() -> float:
        async with app.router.lifespan_context(app):
            started = time.process_time()
            for first in range(0, count, CONNECTIONS):
                await asyncio.gather(*(request(n) for n in range(first, min(count, first + CONNECTIONS))))
            if getattr(app.state, "journal_writer", None):
                app.state.journal_writer.flush()  # its cost counts
            return (time.process_time() - started) / count * 1e6

    return asyncio.run(run())


def measure(configs: dict, count: int, rounds: int, database_url: str | None) -> dict[str, list[float]]:
    """CPU per track of each configuration, ``rounds`` times, the configurations alternating."""
    from opencues.web.app import create_app

    samples: dict[str, list[float]] = {name: [] for name in configs}
    workdir = Path(tempfile.mkdtemp(prefix="opencues-bench-metrics-"))
    settings, db, auth, drop = fresh_database(workdir, database_url)
    try:
        cpu_per_track(create_app(settings, db), auth, min(count, 2000))  # warm up: imports, caches
        names = list(configs)
        for round_ in range(rounds):
            # Each round in another order: the table grows as the run goes, so no configuration
            # always comes after the others.
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                overrides = configs[name]
                samples[name].append(cpu_per_track(create_app(settings.model_copy(update=overrides), db), auth, count))
                print(f"  {name:>26}: {samples[name][-1]:6.1f} us CPU per track", file=sys.stderr, flush=True)
    finally:
        db.dispose()
        drop()
        shutil.rmtree(workdir, ignore_errors=True)
    return samples


def layer_alone(count: int = 200_000) -> dict[str, float]:
    """Microseconds of CPU per request of ``ObserveRequests`` (request id, access-log check, and
    with metrics a counter and a histogram) around an app that does nothing: the difference the
    whole-app figures measure, without the noise of the track beneath it."""
    from opencues.web.observe import ObserveRequests

    route = type("Route", (), {"path": "/v2/accounts/{account_id}/users/{user_id:path}/events"})()

    async def noop_app(scope, receive, send):
        scope["route"] = route
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message):
        pass

    results = {}
    for name, on in (("metrics off", False), ("metrics on", True)):
        layer = ObserveRequests(noop_app, metrics=on)

        async def run() -> float:
            started = time.process_time()
            for _ in range(count):
                await layer({"type": "http", "method": "POST", "path": "/", "headers": []}, receive, send)
            return (time.process_time() - started) / count * 1e6

        results[name] = asyncio.run(run())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="track requests per configuration and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", help="a PostgreSQL server (libpq URL) to bench on instead of SQLite")
    parser.add_argument("--child", choices=["multiprocess"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "multiprocess":  # the environment is set: measure and hand the samples back
        configs = {"metrics off": CONFIGS["metrics off"], "metrics on, multiprocess": CONFIGS["metrics on"]}
        print(json.dumps(measure(configs, args.requests, args.rounds, args.database_url)))
        return

    samples = measure(CONFIGS, args.requests, args.rounds, args.database_url)
    multiproc_dir = tempfile.mkdtemp(prefix="opencues-bench-prometheus-")
    try:
        command = [sys.executable, __file__, "--child", "multiprocess", "--requests", str(args.requests),
                   "--rounds", str(args.rounds)] + (["--database-url", args.database_url] if args.database_url else [])  # fmt: skip
        child = subprocess.run(command, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": multiproc_dir},
                               stdout=subprocess.PIPE, check=True, text=True)  # fmt: skip
    finally:
        shutil.rmtree(multiproc_dir, ignore_errors=True)
    child_samples = json.loads(child.stdout)

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    print(f"\ntrack, {args.requests} requests x {args.rounds} rounds, {'PostgreSQL' if args.database_url else 'SQLite'}:")
    print(f"{'configuration':>26}  {'CPU/track (median)':>18}  {'rate kept':>9}  target")
    for name, values, base in [
        ("metrics off", samples["metrics off"], samples["metrics off"]),
        ("metrics on", samples["metrics on"], samples["metrics off"]),
        ("journal on", samples["journal on"], samples["metrics on"]),
        ("metrics off (child)", child_samples["metrics off"], child_samples["metrics off"]),
        ("metrics on, multiprocess", child_samples["metrics on, multiprocess"], child_samples["metrics off"]),
    ]:
        kept = median(base) / median(values)
        target = TARGETS.get(name)
        verdict = "" if target is None else f">= {target:.2f} {'ok' if kept >= target else 'MISSED'}"
        print(f"{name:>26}  {median(values):15.1f} us  {kept:8.2f}x  {verdict}")
    print("(journal on is against metrics on: the journal's own cost)")
    alone = layer_alone()
    print(f"the observe layer alone, around a no-op app: {alone['metrics off']:.1f} us CPU per request with "
          f"metrics off, {alone['metrics on']:.1f} us with them on")  # fmt: skip


if __name__ == "__main__":
    main()
