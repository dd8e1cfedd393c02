"""Studio page times with 1,000,000 events and 100,000 users stored (SQLite).

    python bench/bench_studio.py                      # seed a temporary database, time every page
    python bench/bench_studio.py --events 200000 --users 20000 --runs 3

Seeding goes through the storage layer (``Database``, the schema's tables, executemany in
batches of 20,000 rows): 100,000 profiles, ``--events`` events spread over those users and the
last 90 days (ten event names; a "heavy" user holds 20,000 of them), one segment holding every
user, 1,000 groups, 40 flows, 20 of each experience type, 10 tags, 200 jobs with events.

Each page is requested in-process through Starlette's TestClient, signed in as the admin, and
timed as the wall time of the request (TestClient's own overhead included, so an upper bound on
server time) and the process CPU time it used: the median of ``--runs``. On a shared machine the
wall time includes waiting for a core, so the target is judged on CPU time (the server's own
work: SQLite runs in-process, so its work is counted there too). Deep keyset pages
(``after=`` / ``before=`` near the end of a list) are timed beside the first pages to show they
cost the same. Target: every page < 200 ms.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opencues import accounts, event_counts, experiences, jobs  # noqa: E402
from opencues.settings import Settings  # noqa: E402
from opencues.storage import Database  # noqa: E402
from opencues.storage.schema import events, experiences as experiences_table, flows, profiles  # noqa: E402
from opencues.storage.schema import groups, segment_members, segments, tags  # noqa: E402

ACCOUNT = "bench"
ADMIN_TOKEN = "bench-admin"
NAMES = ["appcues:flow_started", "appcues:flow_completed", "appcues:step_started", "appcues:step_completed",
         "appcues:session_started", "page_viewed", "button_clicked", "signed_in", "checkout", "search"]  # fmt: skip
BATCH = 20_000
DAY = 86_400_000


def user_id(i: int) -> str:
    return f"user-{i:06d}"


def seed(db: Database, n_events: int, n_users: int) -> None:
    accounts.create_account(db, ACCOUNT, "Bench")
    now = int(time.time() * 1000)
    rng = random.Random(7)
    with db.begin() as conn:
        for start in range(0, n_users, BATCH):
            conn.execute(profiles.insert(), [
                {"account_id": ACCOUNT, "user_id": user_id(i), "attributes": {"plan": "pro" if i % 3 else "free", "seats": i % 50},
                 "created_at": now, "updated_at": now, "group_id": f"group-{i % 1000}"}
                for i in range(start, min(n_users, start + BATCH))
            ])  # fmt: skip
        conn.execute(segments.insert().values(account_id=ACCOUNT, id="everyone", name="Everyone", description=None,
                                              created_at=now, created_by="bench", updated_at=now, updated_by="bench"))  # fmt: skip
        for start in range(0, n_users, BATCH):
            conn.execute(segment_members.insert(), [
                {"account_id": ACCOUNT, "segment_id": "everyone", "user_id": user_id(i)} for i in range(start, min(n_users, start + BATCH))
            ])  # fmt: skip
        conn.execute(groups.insert(), [{"account_id": ACCOUNT, "group_id": f"group-{i}", "attributes": {"tier": i % 3},
                                        "created_at": now, "updated_at": now} for i in range(1000)])  # fmt: skip
        for i in range(10):
            conn.execute(tags.insert().values(account_id=ACCOUNT, id=f"tag-{i}", name=f"Tag {i}", created_at=now, updated_at=now,
                                              created_by="bench", updated_by="bench"))  # fmt: skip
        for i in range(40):
            conn.execute(flows.insert().values(
                account_id=ACCOUNT, id=f"flow-{i}", name=f"Flow {i}", published=i % 2 == 0, frequency="once",
                created_at=now - i, updated_at=now, published_at=now if i % 2 == 0 else None,
                created_by="bench", updated_by="bench", tag_ids=[f"tag-{i % 10}"],
            ))  # fmt: skip
        for resource in experiences.TYPES:
            for i in range(20):
                conn.execute(experiences_table.insert().values(
                    account_id=ACCOUNT, kind=resource, id=f"{resource}-{i}", published=i % 2 == 0, state="DRAFT",
                    created_at=now - i, updated_at=now, created_by="bench", updated_by="bench",
                    document={"name": f"{resource} {i}", "tag_ids": [f"tag-{i % 10}"]},
                ))  # fmt: skip
    heavy = 20_000 if n_events > 100_000 else n_events // 10
    written = 0
    while written < n_events:
        size = min(BATCH, n_events - written)
        rows = []
        for j in range(size):
            k = written + j
            user = user_id(0) if k < heavy else user_id(rng.randrange(n_users))
            rows.append({"account_id": ACCOUNT, "user_id": user, "name": NAMES[k % len(NAMES)],
                         "timestamp": now - rng.randrange(90 * DAY), "attributes": {"flowId": f"flow-{k % 40}", "n": k},
                         "group_id": None, "context": None, "flow_id": f"flow-{k % 40}"})  # fmt: skip
        with db.begin() as conn:
            conn.execute(events.insert(), rows)
        written += size
    for i in range(200):
        job_id = jobs.submit(db, ACCOUNT, "import_profiles").job_id
        with db.begin() as conn:
            jobs.add_event(conn, job_id, "Started", {})
    with db.begin() as conn:  # written without the writers' companions: count them (analytics reads the counts)
        event_counts.rebuild(conn, ACCOUNT)
    with db.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from starlette.testclient import TestClient

    from opencues.web.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), admin_token=ADMIN_TOKEN, job_workers=0, journal="on")
        db = Database(settings.resolved_database_url)
        db.migrate()
        started = time.perf_counter()
        seed(db, args.events, args.users)
        print(f"seeded {args.events:,} events, {args.users:,} users in {time.perf_counter() - started:.1f} s")
        job_id = jobs.list_jobs(db, ACCOUNT)[0]["id"]
        last = user_id(args.users - 60)
        a = f"/studio/accounts/{ACCOUNT}"
        with TestClient(create_app(settings, db), follow_redirects=False) as client:
            form = client.get("/studio/login").text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
            assert client.post("/studio/login", data={"csrf_token": csrf, "token": ADMIN_TOKEN}).status_code == 303
            heavy = client.get(f"{a}/users/view", params={"id": user_id(0)}).text
            before = re.search(r"before=([0-9]+:[0-9]+)", heavy).group(1)
            pages = [
                ("accounts", "/studio/accounts", None),
                ("keys", f"{a}/keys", None),
                ("content: flows", f"{a}/content", None),
                ("content: pins, filtered", f"{a}/content", {"type": "pins", "state": "DRAFT", "tag": "tag-1", "q": "pins"}),
                ("content: flow detail", f"{a}/content/flows/flow-1", None),
                ("tags", f"{a}/tags", None),
                ("segments", f"{a}/segments", None),
                ("segment members, first page", f"{a}/segments/everyone", None),
                ("segment members, last page", f"{a}/segments/everyone", {"after": last}),
                ("users, first page", f"{a}/users", None),
                ("users, prefix", f"{a}/users", {"prefix": "user-0999"}),
                ("users, last page", f"{a}/users", {"after": last}),
                ("user: profile + timeline (20,000 events)", f"{a}/users/view", {"id": user_id(0), "tz": "+05:30"}),
                ("user: timeline, next page", f"{a}/users/view", {"id": user_id(0), "before": before}),
                ("user: ordinary user", f"{a}/users/view", {"id": user_id(args.users // 2)}),
                ("group", f"{a}/groups/view", {"id": "group-7"}),
                ("jobs (200)", f"{a}/jobs", None),
                ("job", f"{a}/jobs/{job_id}", None),
                ("job status (JSON)", f"{a}/jobs/{job_id}/status", None),
                ("export form", f"{a}/export", None),
                ("analytics: one event, 30 days", f"{a}/analytics", {"event": "signed_in"}),
                ("analytics: one flow, 30 days", f"{a}/analytics", {"flow": "flow-3"}),
                ("developer", "/studio/developer", None),
            ]
            print(f"\n{'page':<44} {'wall ms':>8} {'cpu ms':>8}")
            worst = worst_wall = 0.0
            for label, path, params in pages:
                walls, cpus = [], []
                for _ in range(args.runs):
                    wall, cpu = time.perf_counter(), time.process_time()
                    response = client.get(path, params=params)
                    walls.append((time.perf_counter() - wall) * 1000)
                    cpus.append((time.process_time() - cpu) * 1000)
                    assert response.status_code == 200, (label, response.status_code, response.text[:500])
                wall_ms, cpu_ms = statistics.median(walls), statistics.median(cpus)
                worst, worst_wall = max(worst, cpu_ms), max(worst_wall, wall_ms)
                print(f"{label:<44} {wall_ms:8.1f} {cpu_ms:8.1f}")
            print(f"\nslowest page: {worst:.1f} ms CPU, {worst_wall:.1f} ms wall (target < 200 ms): {'met' if worst < 200 else 'NOT met'}")
        db.dispose()


if __name__ == "__main__":
    main()
