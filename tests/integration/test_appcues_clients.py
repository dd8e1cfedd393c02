"""Real clients of the current Appcues API against a real ``opencues serve --demo``.

The requests are the shapes the vendor's own CLI sends (appcues/cli ``client.rs`` and its
``tests/{tags,experiences,checklists,screenshots}.rs``, cited in the spec): Basic auth and a
``User-Agent`` only — no ``Accept``, no ``Content-Type`` — and bodyless POSTs for publishing.
A data-pipeline client (the Airbyte connector) reads every list, checking its connection with
``launchpads``.
"""

from __future__ import annotations

import base64
import csv
import io
import shlex
import zipfile

import httpx

from opencues import experiences

from tests.integration.conftest import tls_context

LISTS = ("flows", "tags", *experiences.TYPES)


def _demo_key(server) -> tuple[str, str]:
    line = next(l.strip() for l in server.output().splitlines() if l.strip().startswith("curl "))
    key, secret = shlex.split(line)[2].split(":", 1)
    return key, secret


class AppcuesCli:
    """Requests as the Rust CLI's ureq agent makes them."""

    def __init__(self, base_url: str, key: str, secret: str, account: str):
        token = base64.b64encode(f"{key}:{secret}".encode()).decode()
        self.http = httpx.Client(base_url=base_url, timeout=30, headers={"User-Agent": "appcues-cli/0.3.0"}, verify=tls_context())
        self.auth = {"Authorization": f"Basic {token}"}
        self.prefix = f"/v2/accounts/{account}"

    def get(self, path: str) -> httpx.Response:
        return self.http.get(self.prefix + path, headers=self.auth)

    def post_empty(self, path: str) -> httpx.Response:  # ureq's send_empty(): no body, no Content-Type
        return self.http.post(self.prefix + path, headers=self.auth)


def _check(backend, live_server):
    # A first start, as a user's: the server migrates its new database itself (on both backends).
    server = live_server(backend=backend, args=["--demo"], migrated=False)
    key, secret = _demo_key(server)
    cli = AppcuesCli(server.base_url, key, secret, "demo")

    # `appcues status`: the credential check is GET tags.
    status = cli.get("/tags")
    assert status.status_code == 200 and {t["name"] for t in status.json()} == {"onboarding", "announcements"}

    # Every list answers a bare array with data; every first item reads back by id.
    for resource in LISTS:
        listed = cli.get(f"/{resource}")
        assert listed.status_code == 200, (resource, listed.text)
        items = listed.json()
        assert isinstance(items, list) and items, resource
        first = items[0]
        assert cli.get(f"/{resource}/{first['id']}").json() == first
        # The CLI's table columns: id, name, published, updated_at (checklists have no name).
        assert {"id", "updated_at"} <= set(first), resource
        if resource != "tags":
            assert "published" in first and ("internal_name" if resource == "checklists" else "name") in first

    # Publish and unpublish with bodyless POSTs, on every experience type and on checklists.
    for resource in experiences.TYPES:
        item_id = cli.get(f"/{resource}").json()[0]["id"]
        for verb, published in (("publish", True), ("unpublish", False)):
            response = cli.post_empty(f"/{resource}/{item_id}/{verb}")
            assert response.status_code == 200 and response.json() == {"status": 200, "title": "OK"}
            assert cli.get(f"/{resource}/{item_id}").json()["published"] is published

    # The vendor's 404 details, which the CLI prints.
    assert cli.get("/tags/nope").json()["detail"] == "tag not found"
    assert cli.get("/mobile/nope").json()["detail"] == "experience not found"
    assert cli.get("/checklists/nope").json()["detail"] == "checklist not found"
    assert cli.get("/flows/nope").json()["detail"] == "flow not found"
    assert cli.get("/screenshots/nope").json()["detail"] == "content not found"

    # `appcues screenshots download`: a ZIP, saved as is.
    shots = cli.get("/screenshots/flow1")
    assert shots.status_code == 200 and shots.headers["content-type"] == "application/zip"
    assert zipfile.ZipFile(io.BytesIO(shots.content)).testzip() is None

    # Wrong credentials: 401 whatever the path; the CLI shows the Problem's title and detail.
    wrong = httpx.get(f"{server.base_url}/v2/accounts/demo/no-such-thing", auth=(key, "wrong"), verify=tls_context())
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Basic")

    # A pipeline reading CSV: every list, one column per top-level field.
    with server.client(auth=(key, secret)) as pipeline:
        assert pipeline.get("/v2/accounts/demo/launchpads").status_code == 200  # Airbyte's check
        for resource in LISTS:
            response = pipeline.get(f"/v2/accounts/demo/{resource}", headers={"Accept": "text/csv"})
            rows = list(csv.DictReader(io.StringIO(response.text)))
            assert response.status_code == 200 and rows and "id" in rows[0], resource
            assert not any("." in column for column in rows[0]), resource  # no flattened columns


def test_clients_of_the_current_api_on_sqlite(live_server):
    _check("sqlite", live_server)


def test_clients_of_the_current_api_on_postgres(live_server):
    _check("postgres", live_server)
