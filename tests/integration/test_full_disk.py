"""A real full disk under a real server: a small tmpfs as the data dir (the SQLite database and
the file store on SQLite; the file store on PostgreSQL), filled to the last byte. Writes answer
507, never 500; reads go on; when space returns, so do writes. Needs permission to mount a
tmpfs (root); skipped otherwise."""

from __future__ import annotations

import errno
import os
import subprocess
import time

import pytest

TMPFS_SIZE = "16m"
EVENT = {"name": "clicked", "timestamp": "2021-07-20T12:34:00.123Z"}


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount_point)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode(errors='replace').strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(directory) -> object:
    """Fill the filesystem of ``directory`` to the last byte; the filler's path."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):  # down to the last partial block
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_answers_507_keeps_reading_and_recovers(live_server, backend, small_disk):
    server = live_server(backend=backend, env={"OPENCUES_DATA_DIR": str(small_disk / "data")})
    account = server.create_account()
    auth = server.create_key(account)
    base = f"/v2/accounts/{account}"
    with server.client(auth=auth) as client:
        assert client.post(f"{base}/users/u1/events", json=EVENT).status_code == 200
        filler = _fill(small_disk)

        upload = b"".join(b'{"user_id": "u%d", "name": "clicked", "timestamp": 1700000000}\n' % i for i in range(20000))
        response = client.post(f"{base}/import/events", content=upload, headers={"Content-Type": "application/ndjson"})
        assert response.status_code == 507, response.text
        assert response.json()["type"] == "about:blank" and "full" in response.json()["detail"]

        # Tracking goes on while the database has room (on SQLite, until its WAL cannot grow): never a 500.
        statuses = {client.post(f"{base}/users/u{i}/events", json=EVENT).status_code for i in range(300)}
        assert statuses <= {200, 507}, statuses
        if backend == "sqlite":
            assert 507 in statuses
        assert client.get(f"{base}/flows").status_code == 200  # reads go on
        assert client.get(f"{base}/users/u1/events").status_code == 200

        filler.unlink()  # space is back
        assert client.post(f"{base}/users/u1/events", json=EVENT).status_code == 200
        response = client.post(f"{base}/import/events", content=upload, headers={"Content-Type": "application/ndjson"})
        assert response.status_code == 202, response.text
        job_url = response.json()["job_url"]
        deadline = time.monotonic() + 60
        while client.get(job_url).json()["status"] == "IN_PROGRESS" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get(job_url).json()["status"] == "COMPLETED"
    output = server.output()
    assert "Traceback" not in output
    # One warning for the outage, not one per refused write (the rest are counted in a later line).
    assert 1 <= output.count("storage is full") <= 2, output
