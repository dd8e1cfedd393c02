"""Under the control API, export emails sent by SMTP are also kept in the outbox (GET /-/outbox)."""

from __future__ import annotations

from opencues import control, mail
from opencues.settings import Settings


class FakeSmtp:
    sent: list = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def send_message(self, message):
        self.sent.append(message)


def _send(settings):
    return mail.send_export_link(settings, ["a@example.com"], url="https://x/downloads/t", expires_at=2_000_000_000,
                                 rows=3, fmt="csv", job_id="job-1")  # fmt: skip


def test_sent_messages_are_copied_to_the_outbox_when_the_control_api_is_on(tmp_path, monkeypatch):
    monkeypatch.setattr(mail, "_connect", lambda config: FakeSmtp())
    settings = Settings(data_dir=tmp_path, smtp_url="smtp://localhost:2525", admin_token="t")
    assert _send(settings) == ["smtp:a@example.com"]
    [entry] = control.list_outbox(settings)
    assert entry["to"] == "a@example.com" and entry["links"] == ["https://x/downloads/t"]


def test_without_the_control_api_sent_messages_are_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(mail, "_connect", lambda config: FakeSmtp())
    _send(Settings(data_dir=tmp_path, smtp_url="smtp://localhost:2525"))
    assert control.list_outbox(Settings(data_dir=tmp_path)) == []
