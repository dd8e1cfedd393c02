"""A plain start (``opencues serve`` on SQLite with the default settings, up to its first API
answer and its worker's first round) leaves out what only some requests need: see
docs/decisions.md, "Start-up: what a plain start loads". This fails when an eager import of one
of them comes back; it measures nothing (start-up times: ``bench/bench_hot_paths.py --only start``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opencues.settings import Settings
from opencues.storage import open_database

# Imported when first needed, never by a plain start.
NOT_ON_A_PLAIN_START = (
    "fastapi",  # the OpenAPI document's generator, and its models: /openapi.json, /docs
    "fastapi.openapi.models",
    "opencues.web.openapi",
    "swagger_ui_bundle",
    "alembic",  # only when the schema is behind (made beforehand here)
    "redis",  # only with OPENCUES_REDIS_URL
    "limits",  # only with a rate limit, or at the first analytics request
    "boto3",  # only with an s3:// file store
    "botocore",
    "psycopg",  # only on PostgreSQL
    "jinja2",  # Studio: at its first request
    "opencues.studio.views",
    "opencues.studio.render",
    "opencues.imports",  # job handlers: when a job is claimed
    "opencues.exports",
    "opencues.export_windows",
    "opencues.conditions",
    "opencues.segment_exports",
    "opencues.analytics",
    "opencues.analytics_sql",
    "opencues.control",  # the control API's library: at its first request (/-/ready's included)
    "opencues.faults",
    "opencues.journal",
    "opencues.snapshots",
    "opencues.web.intake",  # bulk uploads: at the first one
    "opencues.readers",
    "opencues.mail",
    "smtplib",
)

START = """
import json, sys
from starlette.testclient import TestClient

from opencues import accounts, cli  # the command's own imports
from opencues.settings import load_settings
from opencues.storage import open_database
from opencues.web import server  # the HTTP protocol uvicorn runs
from opencues.web.app import create_app
from opencues.worker import Worker

settings = load_settings(job_workers=0)  # the worker's first round runs below, in this thread
db = open_database(settings)
accounts.create_account(db, "a1")
key = accounts.create_key(db, "a1")
with TestClient(create_app(settings, db)) as client:
    status = client.get("/v2/accounts/a1/users/u1/events", auth=(key["key"], key["secret"])).status_code
    worker = Worker(db, client.app.state.file_store, settings, name="first-round")
    worker.remove_expired_exports()
    worker.keep_up_event_storage()
    worker.run_once()
print(json.dumps({"status": status, "loaded": sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules)}))
"""


def test_a_plain_start_does_not_load_what_only_some_requests_need(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    open_database(settings).dispose()  # the schema made beforehand, as by `opencues keys create`
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCUES_")}
    env.update(OPENCUES_DATA_DIR=str(settings.data_dir), PYTHONPATH=str(Path(__file__).parents[3]))
    done = subprocess.run(
        [sys.executable, "-c", START, json.dumps(NOT_ON_A_PLAIN_START)],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["status"] == 200
    assert result["loaded"] == []
