"""``opencues control …``: the control API's operations from the command line (same library)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from opencues import accounts, events, faults, jobs, journal
from opencues.cli import main
from opencues.web.control_routes import CONTROL_ROUTES


@pytest.fixture
def cli(settings, db):
    runner = CliRunner()
    env = {"OPENCUES_DATA_DIR": str(settings.data_dir), "OPENCUES_DATABASE_URL": settings.database_url}

    def run(*args: str, ok: bool = True):
        result = runner.invoke(main, list(args), env=env)
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    return run


def test_accounts_create_with_known_key_and_delete(cli, db):
    created = json.loads(cli("control", "accounts-create", "--id", "t1", "--key", "k-1", "--secret", "s-1").stdout)
    assert created == {"id": "t1", "name": "Account t1", "key": "k-1", "secret": "s-1"}
    assert accounts.authenticate(db, "k-1", "s-1").account_id == "t1"
    cli("control", "accounts-delete", "t1")
    assert accounts.authenticate(db, "k-1", "s-1") is None


def test_reset_account_and_all(cli, db):
    cli("control", "accounts-create", "--id", "t1", "--key", "k-1", "--secret", "s-1")
    with db.begin() as conn:
        events.insert_event(conn, "t1", "u", "e", 1, {})
    cli("control", "reset", "--account", "t1")
    assert events.history(db, "t1", "u", 10, 0) == [] and accounts.authenticate(db, "k-1", "s-1")
    cli("control", "reset")
    assert accounts.authenticate(db, "k-1", "s-1") is None


def test_snapshot_export_and_seed_round_trip(cli, db, tmp_path):
    cli("control", "accounts-create", "--id", "t1", "--key", "k-1", "--secret", "s-1")
    with db.begin() as conn:
        events.insert_event(conn, "t1", "u", "kept", 1, {"a": 1})
    cli("control", "snapshot", "base")
    assert [s["name"] for s in json.loads(cli("control", "snapshots").stdout)] == ["base"]
    out = tmp_path / "base.json"
    cli("control", "snapshot-export", "base", "--output", str(out))
    cli("control", "reset")
    cli("control", "seed", str(out))
    assert [e["name"] for e in events.history(db, "t1", "u", 10, 0)] == ["kept"]
    assert accounts.authenticate(db, "k-1", "s-1").account_id == "t1"
    cli("control", "reset")
    cli("control", "restore", "base")
    assert accounts.authenticate(db, "k-1", "s-1").account_id == "t1"
    cli("control", "snapshot-delete", "base")
    assert json.loads(cli("control", "snapshots").stdout) == []


def test_snapshot_commands_carry_a_waiting_jobs_payload(cli, db, settings, tmp_path):
    import shutil

    from opencues import control
    from opencues.filestore import open_file_store

    cli("control", "accounts-create", "--id", "t1")
    cli("control", "job-mode", "t1", "manual")
    store = open_file_store(settings)
    with store.writer("uploads/held.ndjson") as out:
        out.write(b'{"user_id":"u","name":"held","timestamp":1700000000000}\n')
    job_id = jobs.submit(db, "t1", "import_events", payload_key="uploads/held.ndjson", payload_format="ndjson").job_id
    cli("control", "snapshot", "base")
    out = tmp_path / "base.json"
    cli("control", "snapshot-export", "base", "--output", str(out))
    assert list(json.loads(out.read_text())["files"]) == ["uploads/held.ndjson"]
    for restore in (("restore", "base"), ("seed", str(out))):
        cli("control", "reset")
        shutil.rmtree(settings.data_dir / "files" / "uploads")
        cli("control", *restore)
        assert control.run_job(db, store, settings, job_id)["status"] == "COMPLETED"
        assert [e["name"] for e in events.history(db, "t1", "u", 10, 0)] == ["held"]


def test_faults_commands(cli, db):
    added = json.loads(cli("control", "fault", "--path", "*/flows", "--status", "503", "--times", "2").stdout)
    assert added["status"] == 503 and added["times"] == 2
    assert [f["id"] for f in json.loads(cli("control", "faults").stdout)] == [added["id"]]
    cli("control", "faults", "--remove", added["id"])
    assert faults.list_faults(db) == []
    cli("control", "fault", "--path", "*", "--delay-ms", "5")
    cli("control", "faults", "--clear")
    assert faults.list_faults(db) == []
    bad = cli("control", "fault", "--path", "*", ok=False)
    assert bad.exit_code == 1 and "status" in bad.output


def test_job_mode_run_and_fail(cli, db, settings):
    cli("control", "accounts-create", "--id", "t1")
    cli("control", "job-mode", "t1", "manual")
    with db.begin() as conn:
        held = jobs.create_job(conn, "t1", "export_events", params={})
        other = jobs.create_job(conn, "t1", "import_events", params={})
    failed = json.loads(cli("control", "fail-job", held, "--reason", "nope").stdout)
    assert failed["status"] == "FAILED" and failed["events"][-1]["attributes"]["reason"] == "nope"
    # No payload: every attempt fails; run-job retries at once until the job ends FAILED.
    ran = json.loads(cli("control", "run-job", other).stdout)
    assert ran["status"] == "FAILED" and ran["events"][-1]["name"] == "Failed"


def test_requests_and_outbox(cli, db, settings):
    db.direct.write(journal.INSERT, [journal.entry(method="GET", path="/v2/x", query="", headers={}, body=b"", status=200, duration_ms=1, account_id=None, faulted=False)])
    assert [e["path"] for e in json.loads(cli("control", "requests").stdout)] == ["/v2/x"]
    cli("control", "requests", "--clear")
    assert journal.list_requests(db) == []
    outbox = Path(settings.data_dir) / "outbox"
    outbox.mkdir(parents=True)
    (outbox / "m1.eml").write_bytes(b"To: a@b.c\r\nSubject: Export\r\n\r\nhttp://x/downloads/t\r\n")
    listed = json.loads(cli("control", "outbox").stdout)
    assert listed[0]["id"] == "m1" and listed[0]["links"] == ["http://x/downloads/t"]
    assert "Subject: Export" in cli("control", "outbox", "--show", "m1").stdout
    cli("control", "outbox", "--clear")
    assert json.loads(cli("control", "outbox").stdout) == []


def test_readme_documents_every_control_route():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for route in CONTROL_ROUTES:
        assert re.search(rf"`{route.method} {re.escape(route.path.replace('{account_id}', '{id}').replace('{fault_id}', '{id}').replace('{message_id}', '{id}'))}[`?]", readme), f"{route.method} {route.path}"
