"""The control API holds across server processes: faults, the journal, job modes and snapshots
live in the database, so `--workers 2` behaves like one process."""

from __future__ import annotations

import time

import httpx

from tests.integration.conftest import tls_context

TOKEN = "integration-admin-token"


def test_control_state_is_shared_by_two_server_processes(live_server, backend):
    # Workers look for jobs every 50 ms (not the default 0.5 s), so the half second below in which
    # a manual job must stay untouched is ten rounds of every process's worker.
    server = live_server(backend=backend, env={"OPENCUES_ADMIN_TOKEN": TOKEN, "OPENCUES_JOB_POLL_SECONDS": "0.05"},
                         args=["--test", "--workers", "2"])  # fmt: skip
    admin = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30, verify=tls_context())
    assert admin.get("/-/ready").status_code == 200
    account = admin.post("/-/accounts", json={"id": "multi", "key": "multi-key", "secret": "multi-secret"}).json()
    api = httpx.Client(base_url=f"{server.base_url}/v2/accounts/multi", auth=(account["key"], account["secret"]), timeout=30, verify=tls_context())

    # A fault for the next 3 requests fires exactly 3 times, whichever process answers (new
    # connections spread requests over both).
    admin.post("/-/faults", json={"path": "*/segments", "status": 503, "times": 3})
    statuses = [httpx.get(f"{server.base_url}/v2/accounts/multi/segments", auth=api.auth, verify=tls_context()).status_code for _ in range(8)]
    assert statuses == [503] * 3 + [200] * 5

    # Every request is in the one journal (the other process's entries within its 10 ms flush).
    deadline = time.monotonic() + 5
    while True:
        journaled = admin.get("/-/requests", params={"account_id": "multi", "path": "*/segments"}).json()
        if len(journaled) >= 8 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert [e["status"] for e in journaled] == [200] * 5 + [503] * 3
    assert [e["faulted"] for e in journaled] == [False] * 5 + [True] * 3

    # Manual jobs wait on every process's workers until run.
    admin.put("/-/accounts/multi/job-mode", json={"mode": "manual"})
    job_id = api.post("/import/events", content='{"user_id":"u","name":"late","timestamp":1700000000000}\n',
                      headers={"content-type": "application/ndjson"}).json()["job_id"]  # fmt: skip
    time.sleep(0.5)
    assert api.get(f"/jobs/{job_id}").json()["status"] == "IN_PROGRESS"
    assert admin.post(f"/-/jobs/{job_id}/run").json()["status"] == "COMPLETED"

    # A snapshot taken through one process restores through the other.
    assert admin.post("/-/snapshots", json={"name": "after-import"}).status_code == 201
    admin.post("/-/accounts/multi/reset")
    assert api.get("/users/u/events").json() == []
    assert httpx.post(f"{server.base_url}/-/snapshots/after-import/restore", headers=admin.headers, verify=tls_context()).status_code == 200
    assert [e["name"] for e in api.get("/users/u/events").json()] == ["late"]
