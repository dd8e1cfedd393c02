"""The real server process, over real HTTP: the quick start, restarts, crashes, several workers."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from opencues import flows


def _curl_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith("curl ")]
    assert len(lines) == 1, output
    return lines[0]


def test_demo_prints_a_curl_line_that_works_as_printed(live_server):
    # Exactly the quick start: no configuration at all, data under ./opencues-data.
    server = live_server(env={"OPENCUES_DATA_DIR": None}, args=["--demo"])
    output = server.output()
    assert "account id: demo" in output
    line = _curl_line(output)
    result = subprocess.run(
        ["bash", "-c", line + " --silent --show-error --fail-with-body"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    flows = json.loads(result.stdout)
    assert {f["id"] for f in flows} == {"flow1", "flow2"}
    assert (server.workdir / "opencues-data" / "opencues.db").exists()

    # The OpenAPI document and the interactive docs are served too.
    with server.client() as client:
        spec = client.get("/openapi.json")
        assert spec.status_code == 200
        assert "/v2/accounts/{account_id}/flows" in spec.json()["paths"]
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_the_demo_line_works_the_moment_it_is_printed(tmp_path):
    """Run as soon as it appears (before the server has finished starting), the printed request
    waits for the server instead of being refused: the socket listens before the line is printed.
    With ``--port 0`` the line names the port the OS picked (a request to port 0 would fail)."""
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "opencues"
    env = {**os.environ, "OPENCUES_DATA_DIR": str(tmp_path / "data")}
    env.pop("OPENCUES_DATABASE_URL", None)
    process = subprocess.Popen([str(script), "serve", "--demo", "--port", "0"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.strip().startswith("curl "):
                break
        line = _curl_line("".join(seen))
        assert ":0/" not in line  # --port 0: the line shows the port the OS picked
        result = subprocess.run(["bash", "-c", line + " --silent --show-error --fail-with-body --max-time 60"],
                                capture_output=True, text=True, timeout=90)  # fmt: skip
        assert result.returncode == 0, result.stderr + result.stdout
        assert {f["id"] for f in json.loads(result.stdout)} == {"flow1", "flow2"}
    finally:
        os.killpg(process.pid, 9)
        process.wait()


def test_demo_twice_keeps_data_and_prints_a_fresh_working_key(live_server):
    server = live_server(args=["--demo"])
    key, secret = shlex.split(_curl_line(server.output()))[2].split(":", 1)
    with server.client(auth=(key, secret)) as client:
        assert client.post("/v2/accounts/demo/flows/flow2/publish").status_code == 200
    server.restart()
    line = _curl_line(server.output())
    new_key, new_secret = shlex.split(line)[2].split(":", 1)
    assert new_key != key
    with server.client(auth=(new_key, new_secret)) as client:
        flows = {f["id"]: f for f in client.get("/v2/accounts/demo/flows").json()}
    assert flows["flow2"]["published"] is True


def _process_group(pid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pid:
                    members.append(int(entry))
            except ProcessLookupError:
                pass
    return members


def test_several_workers_share_one_database(live_server, backend):
    server = live_server(backend=backend, args=["--workers", "2"])
    # uvicorn's supervisor plus two worker processes (plus, at most, its multiprocessing helper).
    assert len(_process_group(server.process.pid)) >= 3
    account = server.create_account()
    db = server.database()
    flows.create_flow(db, account, "Tour", flow_id="tour")
    db.dispose()
    key, secret = server.create_key(account)

    def fetch(_):
        with server.client(auth=(key, secret)) as client:
            return client.get(f"/v2/accounts/{account}/flows/tour").status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(fetch, range(40))) == {200}

    # A key revoked from the command line stops working at once in every worker process.
    server.cli("keys", "revoke", key)
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(fetch, range(20))) == {401}


def test_acknowledged_writes_survive_a_restart_and_a_crash(live_server, backend):
    server = live_server(backend=backend)
    # The key from the command line beside the running server: it writes to the same database.
    # (The account and flow through the library: each `opencues` command is a process start of
    # ~0.5 s of CPU, and the command line's writes are this one's.)
    account = server.create_account("acme")
    db = server.database()
    flows.create_flow(db, account, "Tour", flow_id="tour")
    db.dispose()
    created = server.cli_json("keys", "create", "--account", account, "--json")
    auth = (created["key"], created["secret"])
    base = f"/v2/accounts/{account}"

    def snapshot(client) -> dict:
        return {
            "flow": client.get(f"{base}/flows/tour").json(),
            "segments": client.get(f"{base}/segments").json(),
            "profile": client.get(f"{base}/users/u1/profile").json(),
            "events": client.get(f"{base}/users/u1/events").json(),
        }

    with server.client(auth=auth) as client:
        assert client.post(f"{base}/flows/tour/publish").status_code == 200
        assert client.post(f"{base}/segments", json={"name": "Friends", "description": "best"}).status_code == 201
        assert client.patch(f"{base}/users/u1/profile", json={"plan": "pro", "seats": 3}).status_code == 200
        event = {"name": "Clicked", "timestamp": "2021-08-10T09:41:53-04:00", "attributes": {"button": "Go"}}
        assert client.post(f"{base}/users/u1/events", json=event).status_code == 200
        before = snapshot(client)
    assert before["flow"]["published"] is True and before["profile"] == {"plan": "pro", "seats": 3}
    assert [e["timestamp"] for e in before["events"]] == ["2021-08-10T13:41:53.000Z"]

    server.restart()  # graceful: SIGTERM
    with server.client(auth=auth) as client:
        assert snapshot(client) == before
        assert client.patch(f"{base}/users/u1/profile", json={"seats": 4}).status_code == 200
        before["profile"]["seats"] = 4

    server.restart(crash=True)  # SIGKILL right after a 2xx
    with server.client(auth=auth) as client:
        assert snapshot(client) == before


def test_rate_limit_is_shared_by_worker_processes_through_redis(live_server, redis_url):
    server = live_server(args=["--workers", "2"], env={"OPENCUES_RATE_LIMIT": "6/minute", "OPENCUES_REDIS_URL": redis_url})
    account = server.create_account()
    key, secret = server.create_key(account)

    def fetch(_):
        with server.client(auth=(key, secret)) as client:  # a new connection: either worker may answer
            response = client.get(f"/v2/accounts/{account}/flows")
            return response.status_code, response.headers.get("retry-after")

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(fetch, range(20)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 6 + [429] * 14
    assert all(int(retry) >= 1 for status, retry in results if status == 429)


def test_a_key_revoked_through_one_server_process_is_refused_by_another_at_once(live_server, backend):
    """Two servers on one database (PostgreSQL: each remembers keys, forgotten through NOTIFY):
    both served the key, it is revoked from the command line (a third process), and both refuse
    it within a short bound; a wrong secret is refused throughout; a new key works at once."""
    first = live_server(backend=backend)
    second = live_server(backend="sqlite", env={"OPENCUES_DATABASE_URL": first.database_url, "OPENCUES_DATA_DIR": first.data_dir})
    account = first.create_account()
    key, secret = first.create_key(account)
    path = f"/v2/accounts/{account}/users/someone/events"
    servers = (first, second)

    def status(server, auth) -> int:
        with server.client(auth=auth) as client:
            return client.get(path).status_code

    for server in servers:
        assert [status(server, (key, secret)) for _ in range(3)] == [200] * 3  # remembered, if it caches
        assert status(server, (key, secret + "x")) == 401
        assert status(server, (key, "")) == 401

    first.cli("keys", "revoke", key)
    revoked_at = time.monotonic()
    for server in servers:
        while status(server, (key, secret)) != 401:
            assert time.monotonic() - revoked_at < 2.0, "a revoked key still worked 2 s later"
            time.sleep(0.02)

    new_key, new_secret = first.create_key(account)
    for server in servers:
        assert status(server, (new_key, new_secret)) == 200
