"""Bulk-import benchmark: rows/s of a real `opencues serve`, beside the database's own fastest write.

    python bench/bench_import.py                                   # SQLite
    python bench/bench_import.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python bench/bench_import.py --events 200000 --profiles 50000 --formats ndjson   # quicker
    python bench/bench_import.py --events 200000 --profiles 0 --skip-floor --track-probe 50

For each format, ``--events`` events (``--users`` distinct users, 10 short attributes each) are
posted as a file upload (``-F file=@events.ndjson``) to a fresh server process with an in-process
job worker, and timed from the first byte sent to the job's ``COMPLETED`` (polling its job_url);
the time until the 202 (upload stored durably) is shown too. Profiles likewise: ``--profiles``
new users, then the same users again (the merge path: every row updates an existing profile).

The floor is the same rows, already parsed, written by the driver's fastest path — SQLite
``executemany`` in one transaction, PostgreSQL ``COPY`` (events) / ``executemany`` of an
``INSERT … ON CONFLICT`` (profiles) — into the same table with the same indexes of a fresh,
migrated database. ``ratio`` is import time / floor time.

The server's CPU time (all threads, from ``/proc``) per row is printed too: on a shared machine it
is the steadier figure. Memory: the server's peak RSS (``VmHWM``) after start-up, after the 202 and after the job; the
growth is what the upload and the import cost. ``--track-probe RATE`` makes track calls at RATE a
second while each import runs and prints their latencies. With ``--postgres`` the database is
``<url's server>/opencues_bench_import`` (dropped and re-created).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import io
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
# ``--against``'s children import opencues from the tree they measure (run with ``python -S``).
sys.path.insert(0, os.environ.get("OPENCUES_BENCH_TREE", str(ROOT)))

EVENT_NAMES = ["Clicked", "Viewed", "Bought", "Signed in", "Opened"]
PLANS = ["free", "trial", "pro", "team"]
COLORS = ["red", "green", "blue", "teal"]
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- data


def event_rows(count: int, users: int, seed: int = 1, flow_percent: int = 0):
    """``count`` events of ``users`` distinct users, one every ~0.8 s from 2024-01-01, with 10
    short attributes (strings, ints, floats, booleans) — ~180 bytes a line as NDJSON. With
    ``flow_percent``, that share of them also carries a ``flowId`` (one of 300 flows), as flow
    and NPS events do: those events take an entry in the partial flow index too."""
    rng = random.Random(seed)
    for i in range(count):
        when = START + timedelta(milliseconds=i * 797)
        flow = {"flowId": f"flow-{(i * 7919) % 300:03d}"} if i % 100 < flow_percent else {}
        yield {
            **flow,
            "user_id": f"u{rng.randrange(users):06d}",
            "name": EVENT_NAMES[i % 5],
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "color": COLORS[i % 4],
            "plan": PLANS[rng.randrange(4)],
            "count": rng.randrange(1000),
            "score": round(rng.random() * 100, 2),
            "admin": i % 7 == 0,
            "page": f"/p/{rng.randrange(500)}",
            "ref": f"r{i % 97}",
            "seq": i,
            "ok": True,
            "step": rng.randrange(8),
        }


def profile_rows(count: int, seed: int = 2):
    """``count`` profile updates of distinct users, 10 attributes each."""
    rng = random.Random(seed)
    for i in range(count):
        yield {
            "user_id": f"p{i:07d}",
            "email": f"p{i}@example.com",
            "plan": PLANS[rng.randrange(4)],
            "seats": rng.randrange(1, 50),
            "mrr": round(rng.random() * 500, 2),
            "admin": i % 9 == 0,
            "country": COLORS[i % 4],
            "team": f"t{rng.randrange(2000)}",
            "signup": "2023-05-01",
            "score": rng.randrange(100),
            "beta": False,
        }


def to_ndjson(rows) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def _csv_text(value) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def to_csv(rows) -> bytes:
    rows = list(rows)
    columns = list(rows[0]) if rows else []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_text(row.get(c, "")) for c in columns])
    return out.getvalue().encode()


def payload_file(work: Path, kind: str, fmt: str, count: int, users: int, flow_percent: int = 0) -> Path:
    """The generated upload, cached in the work directory."""
    flows = f"-flows{flow_percent}" if flow_percent else ""
    path = work / f"{kind}-{count}-{users}{flows}.{fmt}"
    if not path.exists():
        rows = list(event_rows(count, users, flow_percent=flow_percent) if kind == "events" else profile_rows(count))
        path.write_bytes(to_ndjson(rows) if fmt == "ndjson" else to_csv(rows))
    return path


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (steadier than wall time on a shared machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fresh_database(data_dir: Path, database_url: str | None, pg_name: str = "opencues_bench_import"):
    """Settings for an empty, migrated database (SQLite in ``data_dir`` or a re-created PG db)."""
    from opencues.settings import Settings
    from opencues.storage import open_database

    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    url = None
    if database_url:
        import psycopg

        base = "postgresql://" + database_url.split("://", 1)[1]
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {pg_name}")
        url = base.rsplit("/", 1)[0] + "/" + pg_name
    settings = Settings(data_dir=data_dir, database_url=url)
    db = open_database(settings)  # migrates
    return settings, db


class Server:
    """`opencues serve` in a child process with its own data dir and database."""

    def __init__(self, settings, port: int):
        env = dict(os.environ, OPENCUES_DATA_DIR=str(settings.data_dir), OPENCUES_JOB_POLL_SECONDS="0.1")
        if settings.database_url:
            env["OPENCUES_DATABASE_URL"] = settings.database_url
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(settings.data_dir / "server.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "opencues", "serve", "--port", str(port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip

    def wait_ready(self, client, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited; see {self.log.name}")
            try:
                if client.get(self.base + "/healthz").status_code == 200:
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.2)
        raise SystemExit("server did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class TrackProbe:
    """Track calls at a steady ``rate`` a second, one connection, while an import runs: what an
    application tracking events on the same server sees meanwhile (SQLite's writes wait for the
    import batch holding the write lock)."""

    def __init__(self, base: str, auth, account: str, rate: float):
        import threading

        self.url = f"{base}/v2/accounts/{account}/users/probe-user/events"
        self.auth, self.interval = auth, 1 / rate
        self.latencies: list[float] = []
        self.failures, self.failure = 0, ""  # the last failure's status and body
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=60) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                body = {"name": "probe", "timestamp": f"2024-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}.000Z", "attributes": {"n": n}}
                started = time.perf_counter()
                response = client.post(self.url, auth=self.auth, json=body)
                self.latencies.append(time.perf_counter() - started)
                if not response.is_success:
                    self.failures += 1
                    self.failure = f"{response.status_code} {response.text[:200]}"
                self._stop.wait(self.interval)

    def __enter__(self) -> "TrackProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        if not self.latencies:
            return "track probe: no calls"
        ms = sorted(x * 1000 for x in self.latencies)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        failed = f" ({self.failure})" if self.failures else ""
        return (f"track during the import: {len(ms)} calls, {self.failures} failed{failed}, p50 {ms[len(ms) // 2]:.1f} ms, "
                f"p99 {p99:.1f} ms, max {ms[-1]:.1f} ms")  # fmt: skip


def run_import(client, server: Server, auth, account: str, endpoint: str, path: Path, fmt: str, probe_rate: float = 0) -> dict:
    """Upload ``path``, poll the job to its end; timings and the server's peak RSS (and, with a
    ``probe_rate``, the latencies of track calls made meanwhile)."""
    media = {"ndjson": "application/x-ndjson", "csv": "text/csv"}[fmt]
    pid = server.process.pid
    rss_before = peak_rss_mb(pid)
    cpu_before = cpu_seconds(pid)
    probe = TrackProbe(server.base, auth, account, probe_rate) if probe_rate else None
    with probe or contextlib.nullcontext():
        result = _timed_import(client, server, auth, account, endpoint, path, media)
    result.update(rss_before=rss_before, rss_after=peak_rss_mb(pid), cpu=cpu_seconds(pid) - cpu_before,
                  probe=probe.summary() if probe else None)  # fmt: skip
    return result


def _timed_import(client, server: Server, auth, account: str, endpoint: str, path: Path, media: str) -> dict:
    pid = server.process.pid
    with open(path, "rb") as handle:
        started = time.perf_counter()
        response = client.post(
            f"{server.base}/v2/accounts/{account}/{endpoint}", auth=auth, files={"file": (path.name, handle, media)}
        )
    accepted = time.perf_counter() - started
    if response.status_code != 202:
        raise SystemExit(f"upload failed: {response.status_code} {response.text}")
    rss_accepted = peak_rss_mb(pid)
    job_url = response.json()["job_url"]
    while True:
        job = client.get(job_url, auth=auth).json()
        if job["status"] != "IN_PROGRESS":
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if job["status"] != "COMPLETED":
        raise SystemExit(f"job ended {job['status']}: {job}")
    completed = next((e for e in job.get("events", []) if e.get("name") == "Completed"), {})
    return {
        "seconds": elapsed,
        "accepted": accepted,
        "rss_accepted": rss_accepted,
        "completed": completed.get("attributes", completed),
    }


# --------------------------------------------------------------------------- floors


def parsed_events(path: Path, account: str) -> list[tuple]:
    """The rows an import writes, parsed ahead of time (not timed)."""
    from opencues.readers import Format, event_from_record, read_records

    rows = []
    with open(path, "rb") as stream:
        for _line, value in read_records(stream, Format.NDJSON):
            user_id, name, timestamp, attributes = event_from_record(value)
            rows.append((account, user_id, name, timestamp, orjson.dumps(attributes).decode()))
    return rows


def parsed_profiles(path: Path, account: str) -> list[tuple]:
    from opencues.readers import Format, profile_from_record, read_records

    now = int(time.time() * 1000)
    rows = []
    with open(path, "rb") as stream:
        for _line, value in read_records(stream, Format.NDJSON):
            user_id, attributes = profile_from_record(value)
            rows.append((account, user_id, orjson.dumps(attributes).decode(), now, now))
    return rows


FLOOR_SQLITE = {
    "events": "INSERT INTO events (account_id, user_id, name, timestamp, attributes) VALUES (?, ?, ?, ?, ?)",
    "profiles": "INSERT INTO profiles (account_id, user_id, attributes, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
}
FLOOR_COPY = {
    "events": 'COPY events (account_id, user_id, name, "timestamp", attributes) FROM STDIN',
    "profiles": "COPY profiles (account_id, user_id, attributes, created_at, updated_at) FROM STDIN",
}


def floor_seconds(db, table: str, rows: list[tuple]) -> float:
    """Write ``rows`` with the driver's fastest path in one transaction; seconds."""
    raw = db.engine.raw_connection()
    try:
        driver = raw.driver_connection
        started = time.perf_counter()
        if db.is_sqlite:
            driver.cursor().executemany(FLOOR_SQLITE[table], rows)
        else:
            with driver.cursor() as cursor, cursor.copy(FLOOR_COPY[table]) as copy:
                for row in rows:
                    copy.write_row(row)
        driver.commit()
        return time.perf_counter() - started
    finally:
        raw.close()


# --------------------------------------------------------------------------- two code trees


def backend_cpu_seconds(database_url: str | None, pg_name: str) -> float:
    """CPU seconds of the PostgreSQL backends connected to ``pg_name`` (0 on SQLite)."""
    if not database_url:
        return 0.0
    import psycopg

    base = "postgresql://" + database_url.split("://", 1)[1]
    with psycopg.connect(base, autocommit=True) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (pg_name,))]
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:  # the backend ended meanwhile
            pass
    return total


def one_import(args) -> None:
    """``--one-import``: one events import job run in this process, on a fresh database, with the
    opencues of ``OPENCUES_BENCH_TREE``; prints its figures as one JSON line."""
    import opencues
    from opencues import accounts, jobs, worker
    from opencues.filestore import LocalFileStore

    tree = Path(os.environ.get("OPENCUES_BENCH_TREE", ROOT)).resolve()
    if not Path(opencues.__file__).resolve().is_relative_to(tree):
        raise SystemExit(f"opencues came from {opencues.__file__}, not {tree} (run with python -S)")
    sys.setswitchinterval(worker.GIL_SWITCH_INTERVAL)  # as a worker process sets it
    work = Path(args.work_dir) / "compare"
    settings, db = fresh_database(work, args.database_url, args.pg_database)
    account = "bench-compare"
    accounts.create_account(db, account)
    store = LocalFileStore(work / "files")
    key = f"bench/payload.{args.one_import}"
    with open(args.payload, "rb") as source, store.writer(key) as target:
        shutil.copyfileobj(source, target, 1 << 20)
    jobs.submit(db, account, "import_events", payload_key=key, payload_format=args.one_import, file_store=store)
    worker.load_handlers()  # a server imports them once, at its first job: not the import's cost
    # As every server and worker process does once started (``opencues.web.app``'s
    # ``_freeze_startup_objects``, ``opencues worker``; the server of the tree before analytics
    # too): the start's objects out of the collector's reach. Without it each full collection
    # during the import walked them all — a pause of ~37 ms each, which a server never pays — and
    # the more modules a tree loads, the longer (bench/README.md, "Import rate: the bench process
    # collects as a server does").
    gc.collect()
    gc.freeze()
    pid = os.getpid()
    cpu0, backends0, wall0 = cpu_seconds(pid), backend_cpu_seconds(settings.database_url, args.pg_database), time.perf_counter()
    assert worker.run_pending_jobs(db, store, settings, timeout=3600) == 1
    wall = time.perf_counter() - wall0
    own = cpu_seconds(pid) - cpu0
    backends = backend_cpu_seconds(settings.database_url, args.pg_database) - backends0
    cpu = own + backends
    with db.engine.connect() as conn:
        from sqlalchemy import text

        stored = conn.execute(text("SELECT count(*) FROM events")).scalar()
        job = conn.execute(text("SELECT status, rows_done FROM jobs")).one()
    db.dispose()
    print(orjson.dumps({"rows": stored, "status": job[0], "wall": wall, "cpu": cpu, "backends": backends}).decode(), flush=True)


def compare_trees(args) -> None:
    """``--against``: events imports of this tree and another alternated, each its own process
    (``python -S``, the tree first on the path), on the same payloads; medians and ratios."""
    import site
    import statistics

    trees = {"this": ROOT, "against": Path(args.against).resolve()}
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    backends = {"sqlite": None, "postgresql": args.database_url}
    if not args.database_url:
        backends.pop("postgresql")
    formats = [f for f in args.formats.split(",") if f]
    payloads = {fmt: payload_file(work, "events", fmt, args.events, args.users, args.flow_percent) for fmt in formats}
    print(
        f"{args.events:,} events of {args.users:,} users, {args.flow_percent} % with a flowId; "
        f"this tree {ROOT} against {trees['against']}; {args.rounds} rounds",
        flush=True,
    )
    figures: dict = {}
    for round_ in range(args.rounds):
        for backend, url in backends.items():
            for fmt in formats:
                order = list(trees.items()) if round_ % 2 == 0 else list(trees.items())[::-1]
                for label, tree in order:
                    command = [sys.executable, "-S", str(Path(__file__).resolve()), "--one-import", fmt,
                               "--payload", str(payloads[fmt]), "--work-dir", str(work / label),
                               "--pg-database", args.pg_database]  # fmt: skip
                    if url:
                        command += ["--database-url", url]
                    env = dict(os.environ, OPENCUES_BENCH_TREE=str(tree), PYTHONPATH=os.pathsep.join(site.getsitepackages()))
                    done = subprocess.run(command, check=False, env=env, cwd=tree, capture_output=True, text=True)
                    if done.returncode:
                        raise SystemExit(f"{label} {backend} {fmt} failed:\n{done.stderr}")
                    result = orjson.loads(done.stdout.strip().splitlines()[-1])
                    if result["rows"] != args.events or result["status"] != "COMPLETED":
                        raise SystemExit(f"{label} {backend} {fmt}: {result}")
                    figures.setdefault((backend, fmt, label), []).append(result)
                    print(
                        f"round {round_ + 1} {backend:10s} {fmt:6s} {label:7s}: {args.events / result['wall']:9,.0f} rows/s, "
                        f"{result['cpu'] / args.events * 1e6:5.1f} µs CPU/row"
                        + (f" (of which PostgreSQL {result['backends'] / args.events * 1e6:4.1f})" if url else ""),
                        flush=True,
                    )
    if args.database_url:
        fresh_database(work / "drop", args.database_url, args.pg_database)[1].dispose()
        import psycopg

        with psycopg.connect("postgresql://" + args.database_url.split("://", 1)[1], autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {args.pg_database} WITH (FORCE)")
    print("\nmedians; ratio = this / against (rows per second; rows per CPU second), median of the rounds' ratios")
    for backend in backends:
        for fmt in formats:
            this, against = figures[(backend, fmt, "this")], figures[(backend, fmt, "against")]
            wall_ratio = statistics.median(a["wall"] / t["wall"] for t, a in zip(this, against))
            cpu_ratio = statistics.median(a["cpu"] / t["cpu"] for t, a in zip(this, against))
            median = lambda runs, key: statistics.median(r[key] for r in runs)
            print(
                f"{backend:10s} {fmt:6s} this {args.events / median(this, 'wall'):9,.0f} rows/s "
                f"{median(this, 'cpu') / args.events * 1e6:5.1f} µs CPU/row | against "
                f"{args.events / median(against, 'wall'):9,.0f} rows/s {median(against, 'cpu') / args.events * 1e6:5.1f} µs CPU/row "
                f"| ratio {wall_ratio:.3f} (rows/s), {cpu_ratio:.3f} (rows/CPU-s)",
                flush=True,
            )


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--profiles", type=int, default=250_000)
    parser.add_argument("--formats", default="ndjson,csv")
    parser.add_argument("--database-url", help="postgresql://… (default: SQLite)")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "opencues-bench-import"))
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--against", metavar="TREE", help="alternate events imports with this other checkout (see --rounds)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flow-percent", type=int, default=0, help="share of events carrying a flowId")
    parser.add_argument("--pg-database", default="opencues_bench_import")
    parser.add_argument("--track-probe", type=float, default=0, metavar="RATE",
                        help="during each import, track calls at RATE a second; print their latencies")  # fmt: skip
    parser.add_argument("--one-import", choices=["ndjson", "csv"], help=argparse.SUPPRESS)
    parser.add_argument("--payload", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_import:
        return one_import(args)
    if args.against:
        return compare_trees(args)

    import httpx

    from opencues import accounts

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    backend = "postgresql" if args.database_url else "sqlite"
    formats = [f for f in args.formats.split(",") if f]
    print(f"backend {backend}; {args.events:,} events of {args.users:,} users; {args.profiles:,} profiles", flush=True)

    plans = []
    for fmt in formats if args.events else []:
        plans.append(("events", fmt, payload_file(work, "events", fmt, args.events, args.users), args.events))
    for fmt in formats if args.profiles else []:
        plans.append(("profiles", fmt, payload_file(work, "profiles", fmt, args.profiles, 0), args.profiles))
    results = []
    with httpx.Client(timeout=600) as client:
        for kind, fmt, path, count in plans:
            # Each format starts from the same state: a fresh database and server.
            settings, db = fresh_database(work / "server", args.database_url)
            account = f"bench-{kind}-{fmt}"
            accounts.create_account(db, account)
            key = accounts.create_key(db, account)
            db.dispose()
            server = Server(settings, free_port())
            try:
                server.wait_ready(client)
                endpoint = "import/events" if kind == "events" else "import/profiles"
                size_mb = path.stat().st_size / 1e6
                for label in ["new"] if kind == "events" else ["new", "merge"]:
                    result = run_import(client, server, (key["key"], key["secret"]), account, endpoint, path, fmt, args.track_probe)
                    done = result["completed"].get("ingestions_completed", "?")
                    print(
                        f"{kind:8s} {fmt:6s} {label:5s} {size_mb:6.1f} MB: {result['seconds']:7.2f} s "
                        f"= {count / result['seconds']:9,.0f} rows/s (202 after {result['accepted']:.2f} s); "
                        f"server CPU {result['cpu'] / count * 1e6:.1f} µs/row; "
                        f"rows ok: {done}; server peak RSS {result['rss_before']:.0f} → {result['rss_accepted']:.0f} "
                        f"→ {result['rss_after']:.0f} MB (+{result['rss_after'] - result['rss_before']:.0f})",
                        flush=True,
                    )
                    if result["probe"]:
                        print("  " + result["probe"], flush=True)
                    results.append((kind, fmt, label, count, result))
            finally:
                server.stop()

    if args.skip_floor:
        return
    for kind in ("events", "profiles"):
        if not any(r[0] == kind for r in results):
            continue
        count = args.events if kind == "events" else args.profiles
        source = payload_file(work, kind, "ndjson", count, args.users if kind == "events" else 0)
        rows = (parsed_events if kind == "events" else parsed_profiles)(source, "bench-floor")
        _settings, floor_db = fresh_database(work / "floor", args.database_url)
        accounts.create_account(floor_db, "bench-floor")
        seconds = floor_seconds(floor_db, kind, rows)
        floor_db.dispose()
        print(f"floor    {kind:8s} {seconds:7.2f} s = {count / seconds:9,.0f} rows/s", flush=True)
        for r_kind, fmt, label, r_count, result in results:
            if r_kind == kind:
                print(f"  ratio {kind} {fmt} {label}: {result['seconds'] / seconds:.2f}× the floor")


if __name__ == "__main__":
    main()
