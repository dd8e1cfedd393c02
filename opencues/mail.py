"""Export emails: the signed download link, sent to every requested address.

With ``OPENCUES_SMTP_URL`` set, messages go through a real SMTP client (stdlib ``smtplib``):

- ``smtp://[user:password@]host[:port]`` — port 25 by default; STARTTLS is used whenever the
  server offers it (``?starttls=false`` turns that off, ``?starttls=true`` makes it required);
- ``smtps://[user:password@]host[:port]`` — TLS from the first byte, port 465 by default.

User and password are URL-decoded (``%40`` for ``@``). TLS certificates are verified.

Without SMTP the message is written to ``<data dir>/outbox/<time>-<job>-<n>.eml`` (openable by any
mail client) and the link is logged, so a local user still gets the export.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("opencues.mail")

SMTP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    implicit_tls: bool
    starttls: str  # "auto" | "required" | "off"
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpConfig:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("OPENCUES_SMTP_URL must look like smtp://user:pass@host:port or smtps://…")
    implicit_tls = parts.scheme == "smtps"
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    flag = query.get("starttls", "auto")
    starttls = {"false": "off", "0": "off", "no": "off", "true": "required", "1": "required", "yes": "required"}.get(flag, "auto")
    return SmtpConfig(
        host=parts.hostname,
        port=parts.port or (465 if implicit_tls else 25),
        implicit_tls=implicit_tls,
        starttls="off" if implicit_tls else starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def build_message(
    sender: str, recipient: str, *, url: str, expires_at: int, rows: int, fmt: str, job_id: str,
    title: str = "event export", items: str = "events",
) -> EmailMessage:
    expiry = datetime.fromtimestamp(expires_at, tz=timezone.utc)
    message = EmailMessage()
    message["Subject"] = f"Your {title} is ready ({rows} {items}, {fmt.upper()})"
    message["From"] = sender
    message["To"] = recipient
    message["Date"] = format_datetime(datetime.now(timezone.utc))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    message["X-Opencues-Job"] = job_id
    message.set_content(
        f"Your export of {rows} {items} ({fmt.upper()}) is ready.\n\n"
        f"Download it here:\n{url}\n\n"
        f"This secure link expires on {expiry:%Y-%m-%d %H:%M} UTC. Anyone with the link can download the file.\n"
        f"Job: {job_id}\n"
    )
    return message


def send_export_link(
    settings, recipients, *, url: str, expires_at: int, rows: int, fmt: str, job_id: str,
    title: str = "event export", items: str = "events",
) -> list[str]:
    """Send the link to each recipient (one message each); return where they went
    (``smtp:<address>`` or the ``.eml`` paths). SMTP failures raise ``smtplib.SMTPException``/``OSError``."""
    messages = [
        build_message(settings.mail_from, r, url=url, expires_at=expires_at, rows=rows, fmt=fmt, job_id=job_id,
                      title=title, items=items)  # fmt: skip
        for r in recipients
    ]
    if not settings.smtp_url:
        return [str(write_eml(settings.data_dir, m, job_id, i)) for i, m in enumerate(messages)]
    config = parse_smtp_url(settings.smtp_url)
    with _connect(config) as client:
        for message in messages:
            client.send_message(message)
    log.info("export %s: link emailed to %s", job_id, ", ".join(recipients))
    if getattr(settings, "admin_token", None):  # the control API's outbox shows sent messages too
        for index, message in enumerate(messages):
            _store(settings.data_dir, message, job_id, index)
    return [f"smtp:{r}" for r in recipients]


def _connect(config: SmtpConfig) -> smtplib.SMTP:
    context = ssl.create_default_context()
    if config.implicit_tls:
        client: smtplib.SMTP = smtplib.SMTP_SSL(config.host, config.port, timeout=SMTP_TIMEOUT_SECONDS, context=context)
    else:
        client = smtplib.SMTP(config.host, config.port, timeout=SMTP_TIMEOUT_SECONDS)
    try:
        client.ehlo()
        if config.starttls != "off" and not config.implicit_tls:
            if client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            elif config.starttls == "required":
                raise smtplib.SMTPNotSupportedError("the SMTP server does not offer STARTTLS (?starttls=true)")
        if config.username:
            client.login(config.username, config.password or "")
    except BaseException:
        client.close()
        raise
    return client


def write_eml(data_dir, message: EmailMessage, job_id: str, index: int) -> Path:
    path = _store(data_dir, message, job_id, index)
    log.warning("no OPENCUES_SMTP_URL: export email for %s written to %s (link: %s)", message["To"], path, _link_of(message))
    return path


def _store(data_dir, message: EmailMessage, job_id: str, index: int) -> Path:
    outbox = Path(data_dir) / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{job_id}-{index}.eml"
    path.write_bytes(bytes(message))
    return path


def _link_of(message: EmailMessage) -> str:
    for line in message.get_content().splitlines():
        if line.startswith("http://") or line.startswith("https://"):
            return line
    return "?"
