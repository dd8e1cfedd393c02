"""``opencues api …``: the client's bulk commands against a real server, in plain (non-terminal) mode."""

from __future__ import annotations

import json

import httpx

from tests.integration.conftest import tls_context

TOKEN = "api-commands-token"


def test_import_export_download_and_wait(live_server, tmp_path):
    server = live_server(env={"OPENCUES_ADMIN_TOKEN": TOKEN}, args=["--test"])
    admin = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30, verify=tls_context())
    account = admin.post("/-/accounts", json={"id": "cli"}).json()
    connection = ["api", "--base-url", server.base_url, "--key", account["key"], "--secret", account["secret"], "--account", "cli"]

    events = tmp_path / "events.ndjson"
    events.write_text("".join(json.dumps({"user_id": f"u{i}", "name": "Imported", "timestamp": 1700000000000 + i}) + "\n" for i in range(2000)))
    imported = server.cli(*connection, "import", "events", str(events))
    job = json.loads(imported.stdout)
    assert job["status"] == "COMPLETED" and job["events"][-1]["attributes"]["ingestions_completed"] == 2000
    assert "uploaded events.ndjson" in imported.stderr and "\x1b[" not in imported.stderr  # plain lines

    out = tmp_path / "export.csv"
    exported = server.cli(*connection, "export", "events", "--start-time", "2023-01-01T00:00:00Z",
                          "--end-time", "2024-01-01T00:00:00Z", "--email", "me@example.com", "--download", str(out))  # fmt: skip
    assert json.loads(exported.stdout)["status"] == "COMPLETED"
    assert len(out.read_text().splitlines()) == 2001 and f"saved {out}" in exported.stderr

    groups = tmp_path / "groups.ndjson"
    groups.write_text(json.dumps({"group_id": "acme", "seats": 5}) + "\n")
    assert json.loads(server.cli(*connection, "import", "groups", str(groups)).stdout)["status"] == "COMPLETED"
    api = httpx.Client(base_url=f"{server.base_url}/v2/accounts/cli", auth=(account["key"], account["secret"]), timeout=30, verify=tls_context())
    assert api.get("/groups/acme/profile").json()["seats"] == 5

    admin.put("/-/accounts/cli/job-mode", json={"mode": "manual"})
    held = server.cli(*connection, "import", "profiles", str(_profiles(tmp_path)), "--no-wait")
    job_id = json.loads(held.stdout)["job_id"]
    admin.post(f"/-/jobs/{job_id}/fail", json={"reason": "stopped by the test"})
    waited = server.cli(*connection, "jobs", "wait", job_id, check=False)
    assert waited.returncode == 1 and json.loads(waited.stdout)["status"] == "FAILED"

    missing = server.cli(*connection, "jobs", "wait", "no-such-job", check=False)
    assert missing.returncode == 1 and "404" in missing.stderr and "Traceback" not in missing.stderr


def _profiles(tmp_path):
    path = tmp_path / "profiles.csv"
    path.write_text("user_id,plan\nu1,pro\n")
    return path
