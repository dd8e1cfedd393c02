"""The hot paths of issue 13 beside a bare reference, on SQLite and PostgreSQL, in one run.

    python bench/bench_hot_paths.py [--databases sqlite,postgres] [--postgres-url URL]
        [--duration 5] [--connections 16] [--workers 1,2] [--large-events 1000000]
    python bench/bench_hot_paths.py --only start [--starts 10] [--baseline DIR] [--large-events N]
    python bench/bench_hot_paths.py --only track [--rounds 3] [--baseline DIR] [--databases sqlite]

For each database it starts, on the same machine and under the same uvicorn settings:

* the **reference** (``bench/reference_app.py``): bare Starlette, one route that reads the body
  and answers the same bytes;
* ``opencues serve`` on a fresh data dir (SQLite) or a fresh database (PostgreSQL) holding
  1,000 events (all of one user), then again once the store holds ``--large-events``.

and prints, each beside the reference measured in the same run (and its ratio):

* track (``POST …/events``), PATCH profile (with p99), GET profile, history ``limit=100`` —
  req/s at ``--connections`` (wrk, or a Python load generator when wrk is missing);
* history ``limit=1000``: server CPU per request at 1,000 stored events and at ``--large-events``;
* cold start: exec → first 200 of an API route (the history) on the small and the large store;
* idle RSS of the started server after that first request;
* with ``--workers 1,2,…``: track and the reference at each process count (the scale-out curve).

The PATCH load spreads over 5,000 users, three keys a request (one of them new each time).

``--only start`` measures only the start: ``--starts`` starts of the reference and of opencues
(and, with ``--baseline DIR``, of the checkout in DIR: its ``opencues`` package run by this
interpreter), taken in turn so that the machine's load falls on each alike; median and best of
the wall time and of the server's CPU until the first 200, and the idle RSS after it.

``--only track`` measures only track: ``--rounds`` rounds of one load each of the reference
(POST), opencues and (with ``--baseline DIR``) the checkout in DIR, each server started fresh on
the same store, taken in turn; the median of the server CPU per request (the steadier figure on
a shared machine) and of req/s, and its ratio to the reference of the same round.

``--only history`` measures only track and the history (``limit=100`` and ``limit=1000``) on a
store of 1,000 events: ``--rounds`` rounds, each starting opencues and (with ``--baseline DIR``)
the checkout in DIR in turn; median req/s and server CPU per request of each, the history/track
ratio, and on PostgreSQL also the CPU its backends spent per request (theirs, not the server's).

Either way the measured checkouts' ``opencues`` packages are first compiled to bytecode, as an
installed package is (``compile_bytecode``).
Every target is printed with MET / MISSED. Figures and their context: ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_api import ACCOUNT, HOT_USER, cpu_seconds, free_port, fresh_database, preload  # noqa: E402

from opencues import accounts  # noqa: E402
from opencues.settings import Settings  # noqa: E402
from opencues.storage import open_database  # noqa: E402

HERE = Path(__file__).parent
# The servers run under this interpreter as it was started: ``python -S`` with PYTHONPATH naming an
# older checkout (and the venv's site-packages) measures that checkout, past an editable install.
PYTHON = [sys.executable, *(["-S"] if sys.flags.no_site else [])]
TARGETS = {
    "track_vs_reference": 0.5,  # SQLite track ≥ 0.5× the reference
    "pg_track_vs_sqlite": 0.7,
    "patch_vs_track": 0.5,
    "patch_p99_ms": 20.0,
    "read_vs_track": 0.8,  # GET profile, history limit 100
    "history1000_cpu_ms": 1.5,
    "history1000_flat": 1.2,
    "cold_start_s": 0.5,
    "idle_rss_mb": 50.0,
}

# --- processes ------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes)."""
    found, queue = [], [pid]
    while queue:
        p = queue.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                queue += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return found


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


def tree_rss_mb(pid: int) -> float:
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


@contextmanager
def scratch_dir(prefix: str):
    """A temporary directory (as a ``Path``) for one mode's files, removed afterwards whatever happened."""
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as path:
        yield Path(path)


@contextmanager
def started(cmd: list[str], env: dict, probe_url: str, auth: str | None):
    """Run ``cmd``; yields ``(process, seconds from exec to the first 200 of probe_url)``."""
    log = tempfile.TemporaryFile()
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    headers = {"Authorization": auth} if auth else {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(urllib.request.Request(probe_url, headers=headers), timeout=2) as r:
                    if r.status == 200:
                        r.read()
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"{cmd} did not start:\n{log.read().decode()}") from None
                time.sleep(0.005)
        proc.start_cpu = tree_cpu(proc.pid)  # steadier than the wall time on a shared machine
        yield proc, time.perf_counter() - began
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def reference(port: int, workers: int, env: dict):
    cmd = [*PYTHON, str(HERE / "reference_app.py"), str(port), str(workers)]
    return started(cmd, env, f"http://127.0.0.1:{port}/ping", None)


def opencues(port: int, workers: int, env: dict, auth: str, checkout: str | None = None):
    """``opencues serve`` of this checkout, or of ``checkout`` (a directory holding ``opencues/``)
    — never whichever ``opencues`` the interpreter has installed, which may be another tree's."""
    # -P: not the current directory's opencues; the checkout's, put first on PYTHONPATH.
    cmd = [*PYTHON, "-P", "-m", "opencues", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    checkout = checkout or str(HERE.parent)
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [checkout, env.get("PYTHONPATH")]))}
    hot = f"/v2/accounts/{ACCOUNT}/users/{HOT_USER.replace('@', '%40')}/events?limit=1"
    return started(cmd, env, f"http://127.0.0.1:{port}{hot}", auth)


# --- load -----------------------------------------------------------------------------------

_WRK_DONE = """
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
               + summary.errors.write + summary.errors.timeout
  io.write(string.format('RESULT {"requests": %d, "seconds": %f, "p50_us": %d, "p99_us": %d, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99), errors))
end
"""

# Per scenario: (method, path format with %d for the request number or None, body format or None)
TRACK_BODY = '{"name":"Clicked button","timestamp":"2021-08-10T09:41:%02d.%03d-04:00","attributes":{"button":"Go Home","color":"red","n":%d}}'
PATCH_BODY = '{"plan":"pro","seats":%d,"k%d":%d}'


def _body(kind: str, n: int) -> str:
    if kind == "track":
        return TRACK_BODY % (n % 60, n % 1000, n)
    return PATCH_BODY % (n, n % 50, n)


def wrk_lua(method: str, path: str, body_kind: str | None, auth: str | None) -> str:
    head = f'wrk.headers["Authorization"] = "{auth}"\n' if auth else ""
    head += 'wrk.headers["Content-Type"] = "application/json"\nlocal n = 0\n'
    if body_kind == "track":
        body = "string.format('%s', n %% 60, n %% 1000, n)" % TRACK_BODY
    elif body_kind == "patch":
        body = "string.format('%s', n, n %% 50, n)" % PATCH_BODY
    else:
        body = "nil"
    target = f'string.format("{path}", n % 5000)' if "%d" in path else f'"{path}"'
    return head + (
        "request = function()\n  n = n + 1\n"
        f'  return wrk.format("{method}", {target}, nil, {body})\nend\n'
    ) + _WRK_DONE


def run_load(base: str, method: str, path: str, body_kind: str | None, auth: str | None, args, workdir: Path) -> dict:
    if shutil.which("wrk") and args.load != "python":
        script = workdir / "load.lua"
        script.write_text(wrk_lua(method, path, body_kind, auth))
        cmd = ["wrk", "-t", "1", "-c", str(args.connections), "-d", f"{args.duration}s", "-s", str(script), base]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        data = json.loads(next(l for l in out.splitlines() if l.startswith("RESULT "))[7:])
        return {"rps": data["requests"] / data["seconds"], "p50_ms": data["p50_us"] / 1000,
                "p99_ms": data["p99_us"] / 1000, "errors": data["errors"], "requests": data["requests"]}  # fmt: skip
    return asyncio.run(_python_load(base, method, path, body_kind, auth, args.duration, args.connections))


async def _python_load(base, method, path, body_kind, auth, duration, connections) -> dict:
    import httpx

    latencies, errors = [], 0
    stop = time.perf_counter() + duration
    headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, headers=headers) as client:

        async def worker(w: int):
            nonlocal errors
            n = w
            while time.perf_counter() < stop:
                n += connections
                target = path % (n % 5000) if "%d" in path else path
                began = time.perf_counter()
                response = await client.request(method, target, content=_body(body_kind, n) if body_kind else None)
                latencies.append(time.perf_counter() - began)
                errors += response.status_code >= 400

        began = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(connections)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"rps": len(latencies) / elapsed, "p50_ms": pick(0.5), "p99_ms": pick(0.99), "errors": errors, "requests": len(latencies)}


def measure(proc, base, method, path, body_kind, auth, args, workdir) -> dict:
    before = tree_cpu(proc.pid)
    result = run_load(base, method, path, body_kind, auth, args, workdir)
    result["cpu_us"] = (tree_cpu(proc.pid) - before) / max(1, result["requests"]) * 1e6
    return result


def show(label: str, result: dict, ref: dict | None = None) -> None:
    ratio = f"   {result['rps'] / ref['rps']:5.2f}x reference" if ref else ""
    print(f"  {label:<22} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
          f"CPU {result['cpu_us']:6.0f} us/req  errors {result['errors']}{ratio}", flush=True)  # fmt: skip


# --- the store a bench serves -----------------------------------------------------------------


@contextmanager
def bench_store(kind: str, args, workdir: Path, *, events: int):
    """A fresh store of ``kind`` holding the bench account, its key and ``events`` events of the
    hot user (0: none): ``(db, auth, env)``, ``env`` making ``opencues serve`` use that store
    with otherwise default settings (a plain start)."""
    with fresh_database(args.postgres_url if kind == "postgres" else None, workdir, args.database_prefix) as url:
        data = workdir / f"data-{kind}"
        db = open_database(Settings(data_dir=data, database_url=url))
        accounts.create_account(db, ACCOUNT)
        key = accounts.create_key(db, ACCOUNT)
        auth = "Basic " + base64.b64encode(f"{key['key']}:{key['secret']}".encode()).decode()
        if events:
            preload(db, events, 1_000)
        env = {**os.environ, "OPENCUES_DATA_DIR": str(data)}
        env.pop("OPENCUES_DATABASE_URL", None)
        if url:
            env["OPENCUES_DATABASE_URL"] = url
        try:
            yield db, auth, env
        finally:
            db.dispose()


# --- starts only ----------------------------------------------------------------------------


def compile_bytecode(*checkouts: str) -> None:
    """Each checkout's ``opencues`` as an installed package has it: compiled to bytecode (``pip
    install`` writes it; a checkout gets it at its first run). Without it — a checkout under
    PYTHONDONTWRITEBYTECODE — every start compiles ~80 modules from source, ~0.15 s of CPU."""
    for checkout in checkouts:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(checkout) / "opencues")], check=True)


def measure_starts(env: dict, auth: str, args) -> dict:
    """``args.starts`` rounds of one start each of the reference, opencues and the baseline."""
    import statistics

    contenders = {"reference": None, "opencues": str(HERE.parent)}
    if args.baseline:
        contenders["baseline"] = str(Path(args.baseline).resolve())
    samples: dict[str, list] = {name: [] for name in contenders}
    for _ in range(args.starts):
        for name, checkout in contenders.items():
            port = free_port()
            server = reference(port, 1, env) if checkout is None else opencues(port, 1, env, auth, checkout)
            with server as (proc, start_s):
                time.sleep(0.5)  # idle: the worker thread's first round is over
                samples[name].append((start_s, proc.start_cpu, tree_rss_mb(proc.pid)))
    out = {}
    for name, rows in samples.items():
        wall, cpu, rss = ([row[i] for row in rows] for i in range(3))
        out[name] = {"wall_s": statistics.median(wall), "wall_best_s": min(wall), "cpu_s": statistics.median(cpu),
                     "cpu_best_s": min(cpu), "rss_mb": statistics.median(rss)}  # fmt: skip
        print(f"  {name:<10} exec → first 200: wall {out[name]['wall_s']:.3f} s (best {out[name]['wall_best_s']:.3f}), "
              f"server CPU {out[name]['cpu_s']:.3f} s (best {out[name]['cpu_best_s']:.3f}), idle RSS {out[name]['rss_mb']:.1f} MB "
              f"({len(rows)} starts)", flush=True)  # fmt: skip
    return out


def bench_starts(kind: str, args, workdir: Path) -> dict:
    """The start alone: on a store holding one account and key, then (``--large-events``) on a large one."""
    with bench_store(kind, args, workdir, events=0) as (db, auth, env):
        print(f"== {kind}: empty store (one account and key)", flush=True)
        out = {"empty": measure_starts(env, auth, args)}
        if args.large_events:
            preload(db, args.large_events, 1_000)
            print(f"== {kind}: {args.large_events:,} events", flush=True)
            out["large"] = measure_starts(env, auth, args)
    return out


# --- track only ----------------------------------------------------------------------------


def measure_track_rounds(env: dict, auth: str, args) -> dict:
    """``args.rounds`` rounds of one track load each of the reference, opencues and the baseline."""
    import statistics

    contenders = {"reference": None, "opencues": str(HERE.parent)}
    if args.baseline:
        contenders["baseline"] = str(Path(args.baseline).resolve())
    path = f"/v2/accounts/{ACCOUNT}/users/bench-user-%d/events"
    samples: dict[str, list] = {name: [] for name in contenders}
    with scratch_dir("opencues-track-") as workdir:
        for _ in range(args.rounds):
            for name, checkout in contenders.items():
                port = free_port()
                server = reference(port, 1, env) if checkout is None else opencues(port, 1, env, auth, checkout)
                with server as (proc, _start_s):
                    result = measure(proc, f"http://127.0.0.1:{port}", "POST", path, "track",
                                     None if checkout is None else auth, args, workdir)  # fmt: skip
                    samples[name].append(result)
                    show(name, result, samples["reference"][-1] if checkout else None)
    out = {}
    for name, rows in samples.items():
        out[name] = {"rps": statistics.median(r["rps"] for r in rows), "cpu_us": statistics.median(r["cpu_us"] for r in rows),
                     "ratio": statistics.median(r["rps"] / ref["rps"] for r, ref in zip(rows, samples["reference"]))}  # fmt: skip
        print(f"  {name:<10} median of {len(rows)}: {out[name]['rps']:8.0f} req/s ({out[name]['ratio']:.2f}x reference), "
              f"CPU {out[name]['cpu_us']:4.0f} us/req", flush=True)  # fmt: skip
    return out


def bench_track(kind: str, args, workdir: Path) -> dict:
    with bench_store(kind, args, workdir, events=1_000) as (_db, auth, env):
        print(f"== {kind}: track", flush=True)
        return measure_track_rounds(env, auth, args)


# --- history only ---------------------------------------------------------------------------


def backends_cpu(conn) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving ``conn``'s database (but ``conn``)."""
    pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
    return sum(cpu_seconds(p) for p in pids if not math.isnan(cpu_seconds(p)))


def bench_history(kind: str, args, workdir: Path) -> None:
    """``args.rounds`` rounds of track and the history, opencues and the baseline in turn."""
    import statistics

    contenders = {"opencues": str(HERE.parent), **({"baseline": str(Path(args.baseline).resolve())} if args.baseline else {})}
    loads = {"track": ("POST", "bench-user-%d/events", "track"), "history100": ("GET", "HOT?limit=100", None),
             "history1000": ("GET", "HOT?limit=1000", None)}  # fmt: skip
    samples = {(name, load): [] for name in contenders for load in loads}
    with bench_store(kind, args, workdir, events=1_000) as (_db, auth, env):
        watcher = None
        if kind == "postgres":
            import psycopg

            watcher = psycopg.connect(env["OPENCUES_DATABASE_URL"], autocommit=True)
        users = f"/v2/accounts/{ACCOUNT}/users/"
        hot = users + HOT_USER.replace("@", "%40") + "/events"
        print(f"== {kind}: history, {args.rounds} rounds", flush=True)
        for _ in range(args.rounds):
            for name, checkout in contenders.items():
                port = free_port()
                with opencues(port, 1, env, auth, checkout) as (proc, _start):
                    base = f"http://127.0.0.1:{port}"
                    for load, (method, path, body) in loads.items():
                        path = path.replace("HOT", hot) if path.startswith("HOT") else users + path
                        backends = backends_cpu(watcher) if watcher else 0.0
                        result = measure(proc, base, method, path, body, auth, args, workdir)
                        result["db_cpu_us"] = ((backends_cpu(watcher) - backends) / max(1, result["requests"]) * 1e6) if watcher else 0.0
                        samples[(name, load)].append(result)
        if watcher:
            watcher.close()
    for name in contenders:
        median = {load: {k: statistics.median(r[k] for r in samples[(name, load)]) for k in ("rps", "cpu_us", "db_cpu_us")} for load in loads}
        for load in loads:
            m = median[load]
            ratio = f"  {m['rps'] / median['track']['rps']:.2f}x track" if load != "track" else ""
            db_cpu = f", database {m['db_cpu_us']:5.0f} us" if kind == "postgres" else ""
            rounds = ", ".join(f"{r['cpu_us']:.0f}" for r in samples[(name, load)])
            print(f"  {name:<9} {load:<12} {m['rps']:7.0f} req/s  CPU {m['cpu_us']:5.0f} us/req{db_cpu}{ratio}   (rounds: {rounds} us)", flush=True)


# --- one database ---------------------------------------------------------------------------


def bench_database(kind: str, args, workdir: Path) -> dict:
    out: dict = {}
    with bench_store(kind, args, workdir, events=1_000) as (db, auth, env):
        users = f"/v2/accounts/{ACCOUNT}/users/"
        hot = users + HOT_USER.replace("@", "%40") + "/events"
        print(f"== {kind}", flush=True)

        # The reference, then opencues, each at every worker count (the first one also for the table).
        for workers in args.workers:
            port = free_port()
            with reference(port, workers, env) as (proc, start_s):
                base = f"http://127.0.0.1:{port}"
                if workers == args.workers[0]:
                    time.sleep(0.5)
                    out["ref_start_s"], out["ref_start_cpu"], out["ref_rss_mb"] = start_s, proc.start_cpu, tree_rss_mb(proc.pid)
                    out["ref_get"] = measure(proc, base, "GET", "/x", None, None, args, workdir)
                    show("reference GET", out["ref_get"])
                out[f"ref_post_w{workers}"] = r = measure(proc, base, "POST", users + "bench-user-%d/events", "track", None, args, workdir)
                show(f"reference POST w={workers}", r)
            port = free_port()
            with opencues(port, workers, env, auth) as (proc, start_s):
                base = f"http://127.0.0.1:{port}"
                ref = out[f"ref_post_w{workers}"]
                if workers == args.workers[0]:
                    time.sleep(0.5)
                    out["start_small_s"], out["start_cpu"], out["rss_mb"] = start_s, proc.start_cpu, tree_rss_mb(proc.pid)
                out[f"track_w{workers}"] = r = measure(proc, base, "POST", users + "bench-user-%d/events", "track", auth, args, workdir)
                show(f"track w={workers}", r, ref)
                if workers != args.workers[0]:
                    continue
                out["patch"] = r = measure(proc, base, "PATCH", users + "bench-user-%d/profile", "patch", auth, args, workdir)
                show("PATCH profile", r, ref)
                out["get_profile"] = r = measure(proc, base, "GET", users + "bench-user-7/profile", None, auth, args, workdir)
                show("GET profile", r, out["ref_get"])
                out["history100"] = r = measure(proc, base, "GET", hot + "?limit=100", None, auth, args, workdir)
                show("history limit 100", r, out["ref_get"])
                out["history1000_small"] = r = measure(proc, base, "GET", hot + "?limit=1000", None, auth, args, workdir)
                show("history 1000 @1k", r, out["ref_get"])
        print(f"  cold start: reference {out['ref_start_s']:.2f} s ({out['ref_start_cpu']:.2f} s CPU), "
              f"opencues {out['start_small_s']:.2f} s ({out['start_cpu']:.2f} s CPU) (1k events); "
              f"idle RSS: reference {out['ref_rss_mb']:.0f} MB, opencues {out['rss_mb']:.0f} MB", flush=True)  # fmt: skip

        if args.large_events:
            preload(db, args.large_events - 1_000, 1_000)
            port = free_port()
            with opencues(port, args.workers[0], env, auth) as (proc, start_s):
                out["start_large_s"], out["start_large_cpu"] = start_s, proc.start_cpu
                base = f"http://127.0.0.1:{port}"
                out["history1000_large"] = r = measure(proc, base, "GET", hot + "?limit=1000", None, auth, args, workdir)
                show(f"history 1000 @{args.large_events:,}", r, out["ref_get"])
            print(f"  cold start at {args.large_events:,} events: {out['start_large_s']:.2f} s", flush=True)
    return out


def summary(results: dict, args) -> None:
    print("\n| path | " + " | ".join(results) + " | reference (same run) | target |")
    print("|---|" + "---|" * len(results) + "---|---|")
    w = args.workers[0]

    def row(label, cell, ref, target):
        print(f"| {label} | " + " | ".join(cell(r) for r in results.values()) + f" | {ref} | {target} |")

    refs = {k: r for k, r in results.items()}
    first = next(iter(refs.values()))
    row("track", lambda r: f"{r[f'track_w{w}']['rps']:,.0f} req/s ({r[f'track_w{w}']['rps'] / r[f'ref_post_w{w}']['rps']:.2f}x ref)",
        " / ".join(f"{r[f'ref_post_w{w}']['rps']:,.0f}" for r in refs.values()) + " req/s", "SQLite ≥ 0.5× ref; PG ≥ 0.7× SQLite")
    row("PATCH profile", lambda r: f"{r['patch']['rps']:,.0f} req/s, p99 {r['patch']['p99_ms']:.1f} ms ({r['patch']['rps'] / r[f'track_w{w}']['rps']:.2f}x track)",
        "—", "≥ 0.5× track, p99 ≤ 20 ms")
    row("GET profile", lambda r: f"{r['get_profile']['rps']:,.0f} req/s ({r['get_profile']['rps'] / r[f'track_w{w}']['rps']:.2f}x track)",
        " / ".join(f"{r['ref_get']['rps']:,.0f}" for r in refs.values()) + " req/s (GET)", "≥ 0.8× track")
    row("history, limit 100", lambda r: f"{r['history100']['rps']:,.0f} req/s ({r['history100']['rps'] / r[f'track_w{w}']['rps']:.2f}x track)",
        "", "≥ 0.8× track")
    row("history, limit 1,000, CPU/request", lambda r: f"{r['history1000_small']['cpu_us'] / 1000:.2f} ms @1k"
        + (f", {r['history1000_large']['cpu_us'] / 1000:.2f} ms @{args.large_events:,} ({r['history1000_large']['cpu_us'] / r['history1000_small']['cpu_us']:.2f}x)" if 'history1000_large' in r else ""),
        f"GET {first['ref_get']['cpu_us'] / 1000:.2f} ms", "≤ 1.5 ms, ≤ 1.2× from 1k to large")
    row("cold start, exec → first 200", lambda r: f"{r['start_small_s']:.2f} s" + (f" / {r['start_large_s']:.2f} s large" if 'start_large_s' in r else ""),
        " / ".join(f"{r['ref_start_s']:.2f}" for r in refs.values()) + " s", "≤ 0.5 s")
    row("cold start, server CPU until then", lambda r: f"{r['start_cpu']:.2f} s" + (f" / {r['start_large_cpu']:.2f} s large" if 'start_large_cpu' in r else ""),
        " / ".join(f"{r['ref_start_cpu']:.2f}" for r in refs.values()) + " s", "—")
    row("idle RSS", lambda r: f"{r['rss_mb']:.0f} MB", " / ".join(f"{r['ref_rss_mb']:.0f}" for r in refs.values()) + " MB", "≤ 50 MB")
    if len(args.workers) > 1:
        for n in args.workers:
            row(f"track, {n} workers", lambda r: f"{r[f'track_w{n}']['rps']:,.0f} req/s ({r[f'track_w{n}']['rps'] / r[f'ref_post_w{n}']['rps']:.2f}x ref)",
                " / ".join(f"{r[f'ref_post_w{n}']['rps']:,.0f}" for r in refs.values()) + " req/s", "grows with N (given cores)")

    checks = []
    for kind, r in results.items():
        track = r[f"track_w{w}"]
        if kind == "sqlite":
            checks.append((f"{kind} track / reference", track["rps"] / r[f"ref_post_w{w}"]["rps"], ">=", TARGETS["track_vs_reference"]))
        checks += [
            (f"{kind} PATCH / track", r["patch"]["rps"] / track["rps"], ">=", TARGETS["patch_vs_track"]),
            (f"{kind} PATCH p99 ms", r["patch"]["p99_ms"], "<=", TARGETS["patch_p99_ms"]),
            (f"{kind} GET profile / track", r["get_profile"]["rps"] / track["rps"], ">=", TARGETS["read_vs_track"]),
            (f"{kind} history100 / track", r["history100"]["rps"] / track["rps"], ">=", TARGETS["read_vs_track"]),
            (f"{kind} history1000 CPU ms", r["history1000_small"]["cpu_us"] / 1000, "<=", TARGETS["history1000_cpu_ms"]),
            (f"{kind} cold start s", r["start_small_s"], "<=", TARGETS["cold_start_s"]),
            (f"{kind} idle RSS MB", r["rss_mb"], "<=", TARGETS["idle_rss_mb"]),
        ]
        if "history1000_large" in r:
            large = r["history1000_large"]["cpu_us"]
            checks += [(f"{kind} history1000 CPU ms large", large / 1000, "<=", TARGETS["history1000_cpu_ms"]),
                       (f"{kind} history1000 large/small", large / r["history1000_small"]["cpu_us"], "<=", TARGETS["history1000_flat"]),
                       (f"{kind} cold start large s", r["start_large_s"], "<=", TARGETS["cold_start_s"])]  # fmt: skip
    if "sqlite" in results and "postgres" in results:
        checks.append(("postgres track / sqlite", results["postgres"][f"track_w{w}"]["rps"] / results["sqlite"][f"track_w{w}"]["rps"], ">=", TARGETS["pg_track_vs_sqlite"]))
    print()
    for label, value, op, target in checks:
        met = value >= target if op == ">=" else value <= target
        print(f"target {label:<32} {value:9.2f} {op} {target:<6} {'MET' if met else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    parser.add_argument("--postgres-url", default=os.environ.get("OPENCUES_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
                        help="PostgreSQL server (a fresh database is created on it and dropped)")  # fmt: skip
    parser.add_argument("--duration", type=int, default=5, help="seconds per load (default 5)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--workers", default="1", help="comma-separated server process counts, e.g. 1,2 (default 1)")
    parser.add_argument("--large-events", type=int, default=1_000_000,
                        help="events stored for the large-store rows (the issue's size is 10,000,000; 0 skips them)")  # fmt: skip
    parser.add_argument("--load", choices=("auto", "python"), default="auto", help="wrk when found, else Python")
    parser.add_argument("--database-prefix", default="opencues_bench", help="name prefix of the PostgreSQL databases made")
    parser.add_argument("--only", choices=("start", "track", "history"), help="start, track, history: measure only that (see above)")
    parser.add_argument("--starts", type=int, default=10, help="with --only start: starts of each (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="with --only track or history: rounds of each (default 3)")
    parser.add_argument("--baseline", help="with --only start, track or history: a checkout to measure in turn with this one")
    args = parser.parse_args()
    compile_bytecode(str(HERE.parent), *([args.baseline] if args.baseline else []))
    if args.only == "start":
        with scratch_dir("opencues-start-") as workdir:
            for kind in args.databases.split(","):
                results = bench_starts(kind, args, workdir)
                for store, result in results.items():
                    for name in ("opencues", "baseline"):
                        if name in result:
                            for label, value, target in (("exec → first 200 s", result[name]["wall_s"], TARGETS["cold_start_s"]),
                                                         ("idle RSS MB", result[name]["rss_mb"], TARGETS["idle_rss_mb"])):  # fmt: skip
                                met = "MET" if value <= target else "MISSED"
                                print(f"target {kind} {store} {name} {label:<20} {value:8.3f} <= {target:<6} {met}")
        return
    if args.only == "history":
        with scratch_dir("opencues-history-") as workdir:
            for kind in args.databases.split(","):
                bench_history(kind, args, workdir)
        return
    if args.only == "track":
        with scratch_dir("opencues-hot-") as workdir:
            results = {kind: bench_track(kind, args, workdir) for kind in args.databases.split(",")}
        for name in results[next(iter(results))]:
            if name == "reference":
                continue
            if "sqlite" in results:
                value = results["sqlite"][name]["ratio"]
                met = "MET" if value >= TARGETS["track_vs_reference"] else "MISSED"
                print(f"target sqlite {name} track / reference {value:6.2f} >= {TARGETS['track_vs_reference']}  {met}")
            if "sqlite" in results and "postgres" in results:
                value = results["postgres"][name]["rps"] / results["sqlite"][name]["rps"]
                met = "MET" if value >= TARGETS["pg_track_vs_sqlite"] else "MISSED"
                print(f"target {name} postgres track / sqlite {value:6.2f} >= {TARGETS['pg_track_vs_sqlite']}  {met}")
        return
    args.workers = [int(w) for w in args.workers.split(",")]
    print(f"load generator: {'wrk' if shutil.which('wrk') and args.load != 'python' else 'python asyncio+httpx'}; "
          f"c={args.connections}, {args.duration} s a load", flush=True)  # fmt: skip
    with scratch_dir("opencues-hot-") as workdir:
        results = {kind: bench_database(kind, args, workdir) for kind in args.databases.split(",")}
    summary(results, args)


if __name__ == "__main__":
    main()
