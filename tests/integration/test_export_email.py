"""Exports end to end against a real server process: the link arrives by a real SMTP conversation
(an ``aiosmtpd`` server in this test process) and a plain HTTP client, without credentials,
downloads the file it points at."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import threading
import time
from email import message_from_bytes
from email.policy import default as default_policy

import httpx
import pytest

from tests.integration.conftest import free_port, tls_context

T0 = "2021-08-11T00:00:00.000Z"
LINK_RE = re.compile(r"https?://\S+/downloads/\S+")


class Mailbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self):
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.logins: list[tuple[bytes, bytes]] = []
        self.received = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        with self.received:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content))
            self.received.notify_all()
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.login == b"mailer" and auth_data.password == b"p@ss word")

    def wait_for(self, count: int, timeout: float = 60) -> list:
        with self.received:
            assert self.received.wait_for(lambda: len(self.messages) >= count, timeout), self.messages
            return list(self.messages)


@pytest.fixture
def smtp_server(tmp_path):
    """Start a local SMTP server; ``smtp_server(tls=True)`` also offers STARTTLS with a
    self-signed certificate (returned so the opencues process can be told to trust it)."""
    started = []

    def start(tls: bool = False):
        # Imported here, not at every xdist worker's collection.
        from aiosmtpd.controller import Controller

        mailbox = Mailbox()
        kwargs = dict(authenticator=mailbox.authenticate, auth_require_tls=tls)
        cert = None
        if tls:
            import ssl

            if shutil.which("openssl") is None:
                pytest.skip("the STARTTLS test makes its certificate with the openssl command")

            cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                 "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                check=True, capture_output=True,
            )  # fmt: skip
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            kwargs.update(tls_context=context, require_starttls=True)
        controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **kwargs)
        controller.start()
        started.append(controller)
        return mailbox, controller.port, cert

    yield start
    for controller in started:
        controller.stop()


def _export_and_follow_links(server, mailbox: Mailbox, recipients: list[str], fmt: str = "csv"):
    account = server.create_account()
    key, secret = server.create_key(account)
    api = server.client(auth=(key, secret))
    for i, (user, flow) in enumerate([("u1", "f1"), ("u2", "f2"), ("u3", "f1")]):
        body = {"name": "appcues:flow_started", "timestamp": f"2021-08-11T00:00:0{i}.000Z",
                "attributes": {"flowId": flow, "step": {"n": i}}}  # fmt: skip
        assert api.post(f"/v2/accounts/{account}/users/{user}/events", json=body).status_code == 200
    response = api.post(f"/v2/accounts/{account}/export/events", json={
        "email": recipients, "format": fmt, "conditions": [["flow_id", "==", "f1"]],
        "start_time": "2021-08-11", "end_time": "2021-08-12",
    })  # fmt: skip
    assert response.status_code == 202, response.text
    job_url = response.json()["job_url"]
    deadline = time.monotonic() + 60
    while (job := api.get(job_url).json())["status"] == "IN_PROGRESS":
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["status"] == "COMPLETED", job
    completed = next(e for e in job["events"] if e["name"] == "Completed")["attributes"]
    assert completed["rows_exported"] == 2 and "email_error" not in completed

    messages = mailbox.wait_for(len(recipients))
    assert sorted(r for _, rcpts, _ in messages for r in rcpts) == sorted(recipients)
    bodies = []
    for mail_from, _, raw in messages:
        assert mail_from == "exports@opencues.test"
        message = message_from_bytes(raw, policy=default_policy)
        assert "ready" in message["Subject"]
        bodies.append(message.get_body(("plain",)).get_content())
    links = {LINK_RE.search(b).group(0) for b in bodies}
    assert links == {completed["download_url"]}
    link = links.pop()

    downloaded = httpx.get(link, timeout=30, verify=tls_context())  # a plain client: no API key
    assert downloaded.status_code == 200, downloaded.text
    assert "attachment; filename=" in downloaded.headers["content-disposition"]
    tampered = httpx.get(link[:-3] + ("xyz" if not link.endswith("xyz") else "abc"), timeout=30, verify=tls_context())
    assert tampered.status_code == 403 and tampered.json()["status"] == 403
    return downloaded


def test_link_is_mailed_over_smtp_and_downloads(live_server, backend, smtp_server):
    mailbox, port, _ = smtp_server()
    server = live_server(backend=backend, env={
        "OPENCUES_SMTP_URL": f"smtp://mailer:p%40ss%20word@127.0.0.1:{port}", "OPENCUES_MAIL_FROM": "exports@opencues.test",
    })  # fmt: skip
    downloaded = _export_and_follow_links(server, mailbox, ["ops@example.com", "harriet@example.com"])
    rows = list(csv.reader(io.StringIO(downloaded.text)))
    assert rows[0] == ["name", "timestamp", "user_id", "attributes.flowId", "attributes.step.n"]
    assert [(r[1], r[2], r[4]) for r in rows[1:]] == [("2021-08-11T00:00:00.000Z", "u1", "0"), ("2021-08-11T00:00:02.000Z", "u3", "2")]
    assert mailbox.logins and mailbox.logins[0] == (b"mailer", b"p@ss word")


def test_starttls_is_used_when_offered(live_server, smtp_server):
    mailbox, port, cert = smtp_server(tls=True)  # refuses AUTH and mail before STARTTLS
    server = live_server(env={
        "OPENCUES_SMTP_URL": f"smtp://mailer:p%40ss%20word@127.0.0.1:{port}?starttls=true",
        "OPENCUES_MAIL_FROM": "exports@opencues.test", "SSL_CERT_FILE": cert,
    })  # fmt: skip
    downloaded = _export_and_follow_links(server, mailbox, ["solo@example.com"], fmt="json")
    assert [line.count('"name"') for line in downloaded.text.splitlines()] == [1, 1]
