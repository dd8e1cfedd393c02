"""Two machines sharing nothing but PostgreSQL and an S3 bucket: an API server that runs no jobs
and an `opencues worker` with a data dir of its own. An import accepted by the server is run by
the worker; the export the worker writes is downloaded through the server."""

from __future__ import annotations

import time

import orjson
import pytest

pytestmark = pytest.mark.postgres

SECRET = "shared-secret-for-both-machines"


def wait_for_job(http, account: str, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v2/accounts/{account}/jobs/{job_id}").json()
        if job["status"] != "IN_PROGRESS":
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still IN_PROGRESS after {timeout}s")


def test_server_and_worker_share_only_the_database_and_the_bucket(live_server, s3_server, tmp_path):
    bucket = s3_server.new_bucket()
    shared = {**s3_server.env, "OPENCUES_FILE_STORE": f"s3://{bucket}/files", "OPENCUES_SECRET_KEY": SECRET,
              "OPENCUES_JOB_POLL_SECONDS": "0.05"}  # fmt: skip
    server = live_server(backend="postgres", env={**shared, "OPENCUES_JOB_WORKERS": "0"})
    account = server.create_account("acme")
    auth = server.create_key(account)
    worker_dir = tmp_path / "worker-machine"
    server.env, server_env = {**server.env, "OPENCUES_DATA_DIR": str(worker_dir)}, server.env
    worker = server.spawn("worker", "--name", "elsewhere")  # same database and bucket, another data dir
    server.env = server_env
    try:
        body = b"".join(
            orjson.dumps({"user_id": f"u{i % 7}", "name": "clicked", "timestamp": 1_628_640_000_000 + i}) + b"\n"
            for i in range(300)
        )
        with server.client(auth=auth) as http:
            accepted = http.post(f"/v2/accounts/{account}/import/events", content=body,
                                 headers={"Content-Type": "application/ndjson"})  # fmt: skip
            assert accepted.status_code == 202, accepted.text
            job = wait_for_job(http, account, accepted.json()["job_id"])
            assert job["status"] == "COMPLETED", job
            assert job["events"][-1]["attributes"]["ingestions_completed"] == 300
            export = http.post(f"/v2/accounts/{account}/export/events",
                               json={"email": "ops@example.com", "format": "csv", "conditions": [], "start_time": 0})  # fmt: skip
            assert export.status_code == 202, export.text
            job = wait_for_job(http, account, export.json()["job_id"])
            assert job["status"] == "COMPLETED", job
            link = job["events"][-1]["attributes"]["download_url"]
        assert link.startswith(server.base_url + "/downloads/")
        # The worker wrote the file into the bucket; the server, which never saw it locally, serves it.
        keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert len(keys) == 1 and keys[0].startswith("files/exports/acme/")
        with server.client() as anonymous:
            download = anonymous.get(link)
        assert download.status_code == 200, download.text
        lines = download.text.splitlines()
        assert lines[0].startswith("name,") and len(lines) == 301
        assert not (server.data_dir / "files").exists() and not (worker_dir / "files").exists()
        assert worker.poll() is None, worker.log_path.read_text()
    finally:
        server.kill_spawned(worker)
