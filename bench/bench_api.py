"""Throughput and latency of the event endpoints on ONE ``opencues serve`` process.

    python bench/bench_api.py [--database-url postgresql://…] [--duration 10] [--connections 16]

Starts a server on a fresh data dir (SQLite by default; with ``--database-url`` a fresh database
created on that PostgreSQL server and dropped afterwards), preloads ``--events`` rows directly
through the database (one user holding ``--user-events`` of them; their attribute keys are then
catalogued with ``attribute_keys.rebuild``), then loads the server with
``wrk`` (or, if wrk is missing, a Python asyncio+httpx generator, which needs CPU of its own and
so understates the server) on:

* ``GET /healthz`` — the no-op baseline: what the HTTP stack alone costs;
* ``POST /users/{id}/events`` — track, spread over many users;
* ``GET /users/{id}/events`` — the history (default limit) of the user with many events, at
  ``--history-connections`` (4): its target is latency, which at saturation is only queueing;
* ``track_rules`` — track again once the account has ``--rules`` (50) ingestion filtering rules
  (deny rules on names the load never sends, so every event is checked and stored): it must keep
  90% of track's rate (``--only track,track_rules`` compares just those two);
* ``--metrics-compare``: track again on a second server with ``OPENCUES_METRICS=off``: with
  metrics on, track must keep 90% of that rate.

and prints requests/s, p50/p99 latency, errors, the track / no-op ratio and the targets. With
``--control-compare`` it runs them three times — control API off, on (every request checked for
faults), on with the request journal — and prints each one's req/s and server CPU per request
against the first (the journal's target: track keeps at least 70 % of its rate). On a busy
machine ``--control-compare --in-process N`` is steadier: it calls the app directly and compares
CPU time per track, then times the control layer alone. After the
track run it counts the stored rows: every 200 must be a committed row.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

from opencues import accounts, attribute_keys, ingestion_rules
from opencues.settings import Settings
from opencues.storage import open_database
from opencues.storage.schema import events

ACCOUNT = "bench"
HOT_USER = "hot-user@example.com"
BASE_MS = 1_600_000_000_000
TARGETS = {"track_rps": 3000, "track_ratio": 0.40, "history_p99_ms": 10.0, "rules_ratio": 0.90, "metrics_ratio": 0.90}


# --- data -----------------------------------------------------------------------------------


def preload(db, total: int, hot: int, users: int = 10_000) -> None:
    """``total`` events in the account, one in every ``total // hot`` for the hot user, the rest
    spread over ``users`` users; timestamps ascend (30 s apart) as a live feed's would."""
    rng = random.Random(7)
    every = max(1, total // max(1, hot))

    def rows():
        for i in range(total):
            user = HOT_USER if i % every == 0 and i // every < hot else f"user-{rng.randrange(users)}"
            attrs = f'{{"url":"https://example.com/p/{i % 97}","n":{i % 13}}}'
            yield (ACCOUNT, user, "appcues:page_view" if i % 3 else "Clicked button", BASE_MS + i * 30_000, attrs)

    started = time.perf_counter()
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.is_postgres:
            with cursor.copy("COPY events (account_id, user_id, name, timestamp, attributes) FROM STDIN") as copy:
                for row in rows():
                    copy.write_row(row)
        else:
            cursor.executemany(
                "INSERT INTO events (account_id, user_id, name, timestamp, attributes) VALUES (?, ?, ?, ?, ?)", rows()
            )
        raw.commit()
        cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    with db.begin() as conn:  # the rows went in behind the library: catalogue their keys
        attribute_keys.rebuild(conn, ACCOUNT)
    print(f"preloaded {total:,} events ({hot:,} for {HOT_USER}) in {time.perf_counter() - started:.1f}s")


def count_events(db) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(events)).scalar_one()


@contextmanager
def fresh_database(database_url: str | None, data_dir: Path, prefix: str = "opencues_bench"):
    """The URL to serve: the data dir's SQLite file, or a new database on the given PostgreSQL server
    (named ``<prefix>_<random>``; dropped at the end)."""
    if not database_url:
        yield None
        return
    base = "postgresql+psycopg://" + database_url.split("://", 1)[1]
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield database_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(env: dict, port: int, extra_args: list[str]):
    cmd = [sys.executable, "-m", "opencues", "serve", "--port", str(port), *extra_args]
    # The server's log (one access-log line a request) goes to a file: an unread pipe would fill and stall it.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"server did not start:\n{log.read().decode()}") from None
                time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# --- load generators ------------------------------------------------------------------------

_WRK_DONE = """
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
               + summary.errors.write + summary.errors.timeout
  io.write(string.format('RESULT {"requests": %d, "seconds": %f, "p50_us": %d, "p99_us": %d, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99), errors))
end
"""


def wrk_script(scenario: dict) -> str:
    head = f'wrk.headers["Authorization"] = "{scenario["auth"]}"\n'
    if scenario["method"] == "GET":
        return head + f'wrk.method = "GET"\nwrk.path = "{scenario["path"]}"\n' + _WRK_DONE
    # POST: a different user and timestamp on every request, like real traffic.
    return head + (
        'wrk.headers["Content-Type"] = "application/json"\n'
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        '  local body = string.format(\'{"name":"Clicked button","timestamp":"2021-08-10T09:41:%02d.%03d-04:00",'
        '"attributes":{"button":"Go Home","color":"red","n":%d}}\', n % 60, n % 1000, n)\n'
        f'  return wrk.format("POST", string.format("{scenario["path_prefix"]}%d/events", n % 5000), nil, body)\n'
        "end\n"
    ) + _WRK_DONE


def run_wrk(url: str, scenario: dict, duration: float, connections: int, threads: int, workdir: Path) -> dict:
    script = workdir / f"{scenario['name']}.lua"
    script.write_text(wrk_script(scenario))
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    data = json.loads(line[len("RESULT ") :])
    return {
        "rps": data["requests"] / data["seconds"],
        "p50_ms": data["p50_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "errors": data["errors"],
        "requests": data["requests"],
    }


async def _python_load(base: str, scenario: dict, duration: float, connections: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, headers={"Authorization": scenario["auth"]}) as client:

        async def worker(w: int):
            nonlocal errors
            n = w
            while time.perf_counter() < stop:
                n += connections
                started = time.perf_counter()
                if scenario["method"] == "GET":
                    response = await client.get(scenario["path"])
                else:
                    body = {"name": "Clicked button", "timestamp": f"2021-08-10T09:41:{n % 60:02d}.{n % 1000:03d}-04:00",
                            "attributes": {"button": "Go Home", "color": "red", "n": n}}  # fmt: skip
                    response = await client.post(f"{scenario['path_prefix']}{n % 5000}/events", json=body)
                latencies.append(time.perf_counter() - started)
                errors += response.status_code >= 400

        began = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(connections)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"rps": len(latencies) / elapsed, "p50_ms": pick(0.50), "p99_ms": pick(0.99), "errors": errors,
            "requests": len(latencies)}  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) the server process has used so far (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profiler(pid: int, directory: Path | None, name: str, duration: int):
    """py-spy sampling the server during one scenario (collapsed stacks: flamegraph.pl or speedscope)."""
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    cmd = ["py-spy", "record", "-p", str(pid), "-d", str(duration), "-r", "200", "--format", "raw",
           "-o", str(directory / f"{name}.txt")]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="PostgreSQL server URL (a fresh database is created on it); default SQLite")
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--history-connections", type=int, default=4,
                        help="connections for the history scenario, whose target is latency (default 4)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--events", type=int, default=1_000_000, help="events preloaded (default 1,000,000)")
    parser.add_argument("--user-events", type=int, default=1_000, help="events of the history user (default 1,000)")
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto", help="load generator")
    parser.add_argument("--only", help="comma-separated scenarios to run: noop,track,history")
    parser.add_argument("--profile", type=Path, help="directory for py-spy profiles of the server, one per scenario")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra argument for `opencues serve`")
    parser.add_argument("--metrics-compare", action="store_true",
                        help="also run track on a server with OPENCUES_METRICS=off: metrics must keep 90%% of its rate")  # fmt: skip
    parser.add_argument("--rules", type=int, default=50, help="ingestion filtering rules for track_rules (default 50)")
    parser.add_argument("--control-compare", action="store_true",
                        help="run the scenarios three times: control API off, on (faults checked), on with the journal")  # fmt: skip
    parser.add_argument("--in-process", type=int, metavar="N",
                        help="with --control-compare: instead of a server, send N tracks through the app in this "
                             "process and compare its CPU time per request (steadier on a busy machine)")  # fmt: skip
    args = parser.parse_args()
    if args.in_process:
        compare_control_in_process(args.in_process)
        return

    use_wrk = args.load == "wrk" or (args.load == "auto" and shutil.which("wrk"))
    print(f"load generator: {'wrk' if use_wrk else 'python asyncio+httpx (wrk not found; understates the server)'}")
    workdir = Path(tempfile.mkdtemp(prefix="opencues-bench-"))
    try:
        with fresh_database(args.database_url, workdir) as database_url:
            settings = Settings(data_dir=workdir / "data", database_url=database_url)
            print(f"database: {'postgresql' if database_url else 'sqlite'} (fresh, in {workdir})")
            db = open_database(settings)
            accounts.create_account(db, ACCOUNT)
            key = accounts.create_key(db, ACCOUNT)
            preload(db, args.events, args.user_events)
            before = count_events(db)

            auth = "Basic " + base64.b64encode(f"{key['key']}:{key['secret']}".encode()).decode()
            prefix = f"/v2/accounts/{ACCOUNT}/users/"
            hot = prefix + HOT_USER.replace("@", "%40") + "/events"
            scenarios = [
                {"name": "noop", "method": "GET", "path": "/healthz", "auth": auth},
                {"name": "track", "method": "POST", "path_prefix": prefix + "bench-user-", "auth": auth},
                # A latency target: measured below saturation, where latency is not just queueing
                # (at saturation p50 ≈ connections ÷ throughput, whatever the endpoint).
                {"name": "history", "method": "GET", "path": hot, "auth": auth, "connections": args.history_connections},
                {"name": "track_rules", "method": "POST", "path_prefix": prefix + "bench-user-", "auth": auth, "rules": args.rules},
            ]
            if args.only:
                wanted = set(args.only.split(","))
                scenarios = [s for s in scenarios if s["name"] in wanted]

            env = {**os.environ, "OPENCUES_DATA_DIR": str(settings.data_dir)}
            if database_url:
                env["OPENCUES_DATABASE_URL"] = database_url
            else:
                env.pop("OPENCUES_DATABASE_URL", None)
            configs = [("off", {})]
            if args.control_compare:
                configs += [("faults", {"OPENCUES_ADMIN_TOKEN": "bench"}),
                            ("journal", {"OPENCUES_ADMIN_TOKEN": "bench", "OPENCUES_JOURNAL": "on"})]  # fmt: skip
            if args.metrics_compare:
                configs.append(("metrics-off", {"OPENCUES_METRICS": "off"}))
            by_config = {}
            for config, extra_env in configs:
                if args.control_compare:
                    print(f"-- control API: {config}")
                results = by_config[config] = run_scenarios(args, {**env, **extra_env}, scenarios, hot, auth, use_wrk, workdir, db, settings)
            stored = count_events(db) - before
            db.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    if args.metrics_compare:
        for name, result in by_config["metrics-off"].items():
            base = by_config["off"][name]  # "off": the control API off; metrics on, as by default
            print(f"metrics on {name:>8}: {base['rps'] / result['rps']:5.2f}x the req/s of metrics off (target >= 0.90), "
                  f"{base['cpu_us'] / result['cpu_us']:5.2f}x its server CPU per request")  # fmt: skip
    if args.control_compare:
        for config in ("faults", "journal"):
            for name, result in by_config[config].items():
                base = by_config["off"][name]
                print(f"{config:>8} {name:>8}: {result['rps'] / base['rps']:5.2f}x the req/s of control off, "
                      f"{result['cpu_us'] / base['cpu_us']:5.2f}x its server CPU per request")  # fmt: skip
    report(results, stored)


@asynccontextmanager
async def lifespan(app):
    async with app.router.lifespan_context(app):
        yield


def compare_control_in_process(count: int, connections: int = 16, rounds: int = 5) -> None:
    """CPU time per track request of the app itself (no HTTP server, no load generator), with the
    control API off, on, and on with the journal; the configurations alternate ``rounds`` times
    and each one's median counts (on a busy machine single rounds scatter by ±25 %)."""

    from opencues.web.app import create_app

    # "journal only": OPENCUES_JOURNAL=on without the control API — the journal's own cost on track.
    configs = {"off": {}, "journal only": {"journal": "on"}, "faults": {"admin_token": "bench"},
               "journal": {"admin_token": "bench", "journal": "on"}}  # fmt: skip
    samples: dict[str, list[float]] = {name: [] for name in configs}
    workdir = Path(tempfile.mkdtemp(prefix="opencues-bench-control-"))
    try:
        settings = Settings(data_dir=workdir / "data", job_workers=0)
        db = open_database(settings)
        accounts.create_account(db, ACCOUNT)
        key = accounts.create_key(db, ACCOUNT)
        auth = (key["key"], key["secret"])

        headers = [(b"host", b"bench"), (b"content-type", b"application/json"), (b"user-agent", b"bench"),
                   (b"authorization", b"Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()))]  # fmt: skip

        async def request(app, n: int) -> None:
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

        async def run(app) -> float:
            # The app called directly (no HTTP server, no client): the CPU is the app's own.
            async with lifespan(app):
                started = time.process_time()
                for first in range(0, count, connections):
                    await asyncio.gather(*(request(app, n) for n in range(first, min(count, first + connections))))
                if getattr(app.state, "journal_writer", None):
                    app.state.journal_writer.flush()  # its cost counts
                return (time.process_time() - started) / count * 1e6

        for _ in range(rounds):
            for name, overrides in configs.items():
                app = create_app(settings.model_copy(update=overrides), db)
                cpu_us = asyncio.run(run(app))
                samples[name].append(cpu_us)
                print(f"{name:>12}: {cpu_us:6.1f} us CPU per track", flush=True)
        db.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    median = {name: sorted(values)[len(values) // 2] for name, values in samples.items()}
    for name in ("journal only", "faults", "journal"):
        print(f"median of {rounds}: {name} {median[name]:.1f} us vs off {median['off']:.1f} us per track = "
              f"{median['off'] / median[name]:.2f}x the rate a CPU-bound server keeps")  # fmt: skip
    layer_alone(count)


def layer_alone(count: int) -> None:
    """The control layer's own CPU per request, around an app that does nothing (the difference
    the whole-app figures above measure, without the noise of the track beneath it)."""
    from types import SimpleNamespace

    from opencues.web.control_layer import ControlLayer

    async def noop_app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"status":200,"title":"OK"}'})

    scope = {"type": "http", "method": "POST", "path": f"/v2/accounts/{ACCOUNT}/users/u/events", "query_string": b"",
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                         (b"authorization", b"Basic a2V5OnNlY3JldA==")]}  # fmt: skip

    async def receive():
        return {"type": "http.request", "body": b'{"name":"Clicked button","timestamp":1}', "more_body": False}

    async def send(_message):
        pass

    workdir = Path(tempfile.mkdtemp(prefix="opencues-bench-layer-"))
    try:
        settings = Settings(data_dir=workdir / "data")
        db = open_database(settings)
        for name, overrides in {"faults": {"admin_token": "bench"}, "journal": {"admin_token": "bench", "journal": "on"}}.items():
            state = SimpleNamespace(db=db)
            layer = ControlLayer(noop_app, state=state, settings=settings.model_copy(update=overrides))

            async def run() -> float:
                started = time.process_time()
                for _ in range(count):
                    await layer(scope, receive, send)
                if getattr(state, "journal_writer", None):
                    state.journal_writer.flush()
                return (time.process_time() - started) / count * 1e6

            print(f"the layer alone, {name}: {asyncio.run(run()):.1f} us CPU per request")
        db.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_scenarios(args, env, scenarios, hot, auth, use_wrk, workdir, db, settings) -> dict:
    port = free_port()
    results = {}
    with server(env, port, args.serve_arg) as proc:
        base = f"http://127.0.0.1:{port}"
        body = urllib.request.urlopen(urllib.request.Request(base + hot, headers={"Authorization": auth})).read()
        assert len(json.loads(body)) == min(100, args.user_events), "history sanity check failed"
        for scenario in scenarios:
            if "rules" in scenario:
                ingestion_rules.replace(db, ACCOUNT, {"event_names": [f"bench-denied-{i}" for i in range(scenario["rules"])]})
                time.sleep(settings.ingestion_rules_cache_seconds + 0.5)  # the server's cache expires
            spy = profiler(proc.pid, args.profile, scenario["name"], args.duration)
            cpu_before = cpu_seconds(proc.pid)
            connections = scenario.get("connections", args.connections)
            if use_wrk:
                result = run_wrk(base, scenario, args.duration, connections, args.threads, workdir)
            else:
                result = asyncio.run(_python_load(base, scenario, args.duration, connections))
            # Server CPU per request: steadier than req/s when other work shares the machine.
            result["cpu_us"] = (cpu_seconds(proc.pid) - cpu_before) / max(1, result["requests"]) * 1e6
            results[scenario["name"]] = result
            if spy:
                spy.wait()
            print(f"{scenario['name']:>8} (c={connections:>2}): {result['rps']:8.0f} req/s   p50 {result['p50_ms']:6.2f} ms   "
                  f"p99 {result['p99_ms']:6.2f} ms   server CPU {result['cpu_us']:5.0f} us/req   "
                  f"errors {result['errors']}", flush=True)  # fmt: skip
    return results


def report(results: dict, stored: int) -> None:
    tracks = [results[name] for name in ("track", "track_rules") if name in results]
    if tracks:
        answered = sum(t["requests"] - t["errors"] for t in tracks)
        print(f"track: {stored:,} rows stored for {answered:,} answered requests "
              f"({'ok' if stored >= answered else 'MISSING ROWS'})")  # fmt: skip
    checks = []
    if "track" in results:
        checks.append(("track req/s", results["track"]["rps"], ">=", TARGETS["track_rps"]))
    if "track" in results and "noop" in results:
        checks.append(("track / no-op", results["track"]["rps"] / results["noop"]["rps"], ">=", TARGETS["track_ratio"]))
        cpu_ratio = results["noop"]["cpu_us"] / results["track"]["cpu_us"]
        print(f"no-op / track server CPU per request: {cpu_ratio:.2f} (the req/s ratio on an otherwise idle core)")
    if "track" in results and "track_rules" in results:
        checks.append(("rules / track", results["track_rules"]["rps"] / results["track"]["rps"], ">=", TARGETS["rules_ratio"]))
        checks.append(("rules / track CPU", results["track"]["cpu_us"] / results["track_rules"]["cpu_us"], ">=", TARGETS["rules_ratio"]))
    if "track" in results and "track_metrics_off" in results:
        on, off = results["track"], results["track_metrics_off"]
        checks.append(("metrics on / off", on["rps"] / off["rps"], ">=", TARGETS["metrics_ratio"]))
        checks.append(("metrics on/off CPU", off["cpu_us"] / on["cpu_us"], ">=", TARGETS["metrics_ratio"]))
    if "history" in results:
        checks.append(("history p99 ms", results["history"]["p99_ms"], "<=", TARGETS["history_p99_ms"]))
    for label, value, op, target in checks:
        met = value >= target if op == ">=" else value <= target
        print(f"target {label:<15} {value:10.2f} {op} {target:<8} {'MET' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
