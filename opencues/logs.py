"""Logging for every opencues process: one format (text, or JSON lines), one level, no secrets.

``configure(settings)`` is called by each server process, by ``opencues worker`` and by the CLI's
``serve``; uvicorn's own loggers propagate here (``serve`` runs uvicorn with ``log_config=None``).
``OPENCUES_LOG_FORMAT=json`` writes one JSON object a line: ``time``, ``level``, ``logger``,
``message`` and the fields a line carries (the access log's ``request_id``, ``status``…).

``Redact`` is a last line of defence: no code logs a credential, but should an exception text
carry a URL with a password or an ``Authorization`` header, the line is scrubbed before it is
written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_PATTERNS = (
    (re.compile(r"(\w+://[^\s:/@]*:)[^\s@/]+@"), r"\1***@"),  # scheme://user:password@host
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(basic|bearer)\s+[^\s\"',}]+"), r"\1\2 ***"),
    (re.compile(r"/downloads/[^\s\"'?]+"), "/downloads/***"),  # export links: the token is the credential
)
# What each pattern needs to match at all: a line holding none of these (every access-log line
# but a download's) is scanned once rather than three times.
_MAY_HOLD_SECRET = re.compile(r"(?i)://|authorization|/downloads/")


def redact(text: str) -> str:
    return text if _MAY_HOLD_SECRET.search(text) is None else redact_all(text)


def redact_all(text: str) -> str:
    """``redact`` without its first scan: every pattern applied."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._second: tuple[int, str] = (-1, "")  # the last second formatted, and its text

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``logging.Formatter``'s time (local, to the millisecond), the text of each second made
        once: under load every line of a second shares it, and ``strftime`` was a tenth of the
        access log's cost."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached_second, text = self._second
        if second != cached_second:
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        return self.default_msec_format % (text, record.msecs)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str))


def configure(settings) -> None:
    """Send every logger's records to stderr in the configured format and level (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_opencues", False)]:
        root.removeHandler(old)
    handler._opencues = True
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # Alembic announces each of its plugins at INFO on every migration: noise above DEBUG. (Its
    # "Running upgrade …" lines, from alembic.runtime.migration, stay.)
    logging.getLogger("alembic.runtime.plugins").setLevel(max(root.level, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # opencues.web.observe writes the access log (with request ids, without raw paths): uvicorn's is off.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False
