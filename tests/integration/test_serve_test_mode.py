"""``opencues serve --test`` and ``--seed``: a generated admin token, an ephemeral data dir removed at
exit, and a snapshot file loaded on start."""

from __future__ import annotations

import re
import time

import httpx

from opencues import accounts, events, snapshots
from opencues.settings import Settings
from opencues.storage import open_database

from tests.integration.conftest import tls_context


def test_generated_token_ephemeral_data_and_seed(live_server, tmp_path):
    source = open_database(Settings(data_dir=tmp_path / "source"))
    accounts.create_account(source, "seeded")
    accounts.create_key(source, "seeded", key="seed-key", secret="seed-secret")
    with source.begin() as conn:
        events.insert_event(conn, "seeded", "u1", "From the seed", 1_700_000_000_000, {})
        seed = tmp_path / "seed.json"
        seed.write_bytes(snapshots.encode(snapshots.dump(conn)))
    source.dispose()

    server = live_server(env={"OPENCUES_DATA_DIR": None}, args=["--test", "--seed", str(seed)])
    deadline = time.monotonic() + 10
    while not (match := re.search(r"^admin token: (\S+)$", server.output(), re.M)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert match, server.output()
    token = match[1]
    assert "seeded" in server.output()
    journal = httpx.get(f"{server.base_url}/-/requests", headers={"Authorization": f"Bearer {token}"}, verify=tls_context())
    assert journal.status_code == 200  # the control API and the journal are on
    assert httpx.get(f"{server.base_url}/-/requests", headers={"Authorization": "Bearer nope"}, verify=tls_context()).status_code == 401

    history = httpx.get(f"{server.base_url}/v2/accounts/seeded/users/u1/events", auth=("seed-key", "seed-secret"), verify=tls_context())
    assert [e["name"] for e in history.json()] == ["From the seed"]

    ephemeral = [p for p in _temp_dirs(server) if p.exists()]
    assert ephemeral, "serve --test should keep its data in a temporary directory"
    server.stop()
    assert not any(p.exists() for p in ephemeral), "the temporary data dir must be removed at exit"
    assert not (server.workdir / "opencues-data").exists()


def _temp_dirs(server):
    """The server process's open SQLite file shows where its data dir is."""
    from pathlib import Path

    found = set()
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            if int(pid_dir.name) != server.process.pid:
                continue
            for fd in (pid_dir / "fd").iterdir():
                target = Path(fd.readlink()) if fd.is_symlink() else None
                if target and target.name == "opencues.db" and "opencues-test-" in str(target):
                    found.add(target.parent)
        except OSError:
            continue
    return found
