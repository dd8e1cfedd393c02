"""opencues.logs: text or JSON lines, the configured level, credentials scrubbed."""

from __future__ import annotations

import json
import logging

from opencues import logs
from opencues.settings import Settings


def record(message, *args, **extra):
    rec = logging.LogRecord("opencues.test", logging.WARNING, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_the_extra_fields():
    line = json.loads(logs.JsonFormatter().format(record("job %s done", "j1", job_id="j1", rows=3)))
    assert line["message"] == "job j1 done" and line["level"] == "WARNING" and line["logger"] == "opencues.test"
    assert line["job_id"] == "j1" and line["rows"] == 3 and line["time"].endswith("Z")


def test_credentials_are_scrubbed_in_both_formats():
    message = "cannot reach smtp://mailer:hunter2@mail:25 (Authorization: Basic dXNlcjpwYXNz) via /downloads/tok.en-123"
    for formatter in (logs.TextFormatter(), logs.JsonFormatter()):
        text = formatter.format(record(message))
        assert "hunter2" not in text and "dXNlcjpwYXNz" not in text and "tok.en-123" not in text
        assert "smtp://mailer:***@mail:25" in text


def test_configure_sets_format_and_level(capsys):
    logs.configure(Settings(log_format="json", log_level="WARNING"))
    try:
        logging.getLogger("opencues.x").info("hidden")
        logging.getLogger("opencues.x").warning("shown %d", 1)
        err = capsys.readouterr().err.strip().splitlines()
        assert [json.loads(line)["message"] for line in err] == ["shown 1"]
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_opencues", False)]:
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)


def test_text_lines_are_the_stock_formatters_scrubbed(monkeypatch):
    """The text line's time is made once a second (``TextFormatter.formatTime``) and a line is
    scanned once for anything to scrub: the lines stay the stock formatter's, scrubbed."""
    stock = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    formatter = logs.TextFormatter()
    messages = ["POST /v2/accounts/{account_id}/users/{user_id}/events 200 1.2ms id=ab12",
                "GET /downloads/{token} 200 0.4ms id=x", "see HTTPS://u:pw@host/x", "AUTHORIZATION: basic Zm9v"]  # fmt: skip
    formatted = []
    for created in (1_700_000_000.001, 1_700_000_000.999, 1_700_000_001.5, 1_700_000_000.25):
        for message in messages:
            rec = record(message)
            rec.created, rec.msecs = created, int((created % 1) * 1000)
            assert formatter.format(rec) == logs.redact_all(stock.format(rec))
            formatted.append(formatter.format(rec))
    assert "pw@" not in "".join(formatted) and "Zm9v" not in "".join(formatted) and "{token}" not in "".join(formatted)
    strftime_calls = []
    real_strftime = logs.time.strftime
    monkeypatch.setattr(logs.time, "strftime", lambda *a: strftime_calls.append(a) or real_strftime(*a))
    for _ in range(3):
        formatter.format(record("same second"))
    assert len(strftime_calls) <= 2  # once a second (twice if the clock ticked meanwhile)
