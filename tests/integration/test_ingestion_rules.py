"""Ingestion filtering rules saved through one server process apply in every process of a
`serve --workers 2` within `OPENCUES_INGESTION_RULES_CACHE_SECONDS`; a group import runs on the
server's own worker. Real server processes over HTTP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from opencues.storage.schema import events

STAMP = "2021-08-11T00:00:00Z"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request):
    return request.param


def stored(server, name: str) -> int:
    db = server.database()
    try:
        with db.connect() as conn:
            return conn.execute(select(func.count()).select_from(events).where(events.c.name == name)).scalar_one()
    finally:
        db.dispose()


def test_rules_reach_every_server_process_within_the_cache_time(live_server, backend):
    server = live_server(backend=backend, args=["--workers", "2"], env={"OPENCUES_INGESTION_RULES_CACHE_SECONDS": "0.25"})
    account = server.create_account()
    auth = server.create_key(account)

    def track(name):
        with server.client(auth=auth) as http:  # a fresh connection: either process may answer
            return http.post(f"/v2/accounts/{account}/users/u/events", json={"name": name, "timestamp": STAMP}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(track, ["noise"] * 20)) == {200}  # both processes cache "no rules"
    with server.client(auth=auth) as http:
        saved = http.post(f"/v2/accounts/{account}/ingestion_filtering_rules", json={"event_names": ["noise"]})
        assert saved.status_code == 200, saved.text
    time.sleep(0.4)  # past the cache time of a process that cached "no rules" before the save
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(track, ["noise"] * 30 + ["signal"] * 5)) == {200}
    assert stored(server, "noise") == 20 and stored(server, "signal") == 5

    # A group import, run by a server process's own worker thread.
    with server.client(auth=auth) as http:
        job = http.post(f"/v2/accounts/{account}/import/groups", content=b"group_id,plan\ng1,pro\n",
                        headers={"Content-Type": "text/csv"}).json()  # fmt: skip
        deadline = time.monotonic() + 30
        while http.get(f"/v2/accounts/{account}/jobs/{job['job_id']}").json()["status"] == "IN_PROGRESS":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert http.get(f"/v2/accounts/{account}/groups/g1/profile").json() == {"group_id": "g1", "plan": "pro"}
