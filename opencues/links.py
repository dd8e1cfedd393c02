"""Signed download links for export files: whoever holds the link may fetch that one file
until it expires, without API credentials — like the vendor's emailed "secure link".

A token is ``<payload>.<signature>``, both base64url: the payload is ``{"k": file key, "x":
expiry (epoch seconds), "n": download filename}``, the signature HMAC-SHA256 of the payload under a
key derived from the server secret. Changing any byte of the payload (another file, a later
expiry) breaks the signature; without the secret no valid token can be made.

The secret is ``OPENCUES_SECRET_KEY`` or, when unset, a random one generated once into
``<data dir>/secret_key`` (mode 0600) so links keep working across restarts; concurrent first
starts agree on one secret (the file appears atomically, first writer wins).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from opencues.errors import ApiError

SECRET_FILE = "secret_key"
_PURPOSE = b"opencues export download link v1"


@dataclass(frozen=True)
class Link:
    key: str
    filename: str
    expires_at: int  # epoch seconds


def server_secret(settings) -> bytes:
    """The signing secret: the configured one, or the data dir's (created on first use)."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = Path(settings.data_dir) / SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{SECRET_FILE}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # atomic, and fails if another process got there first
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    value = path.read_text().strip()
    if not value:
        raise ApiError(500, f"the signing secret file {path} is empty")
    return value.encode()


def _signing_key(secret: bytes) -> bytes:
    return hmac.new(secret, _PURPOSE, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, key: str, filename: str, ttl_seconds: int, *, now: float | None = None) -> tuple[str, int]:
    """A token for ``key`` and its expiry (epoch seconds)."""
    expires_at = int(now if now is not None else time.time()) + int(ttl_seconds)
    payload = _b64(orjson.dumps({"k": key, "x": expires_at, "n": filename}))
    signature = _b64(hmac.new(_signing_key(secret), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}", expires_at


def verify(secret: bytes, token: str, *, now: float | None = None) -> Link:
    """The link a token grants, or 403 (not a token we made) / 410 (expired)."""
    payload, _, signature = token.partition(".")
    expected = _b64(hmac.new(_signing_key(secret), payload.encode(), hashlib.sha256).digest())
    if not signature or not hmac.compare_digest(signature.encode(), expected.encode()):
        raise ApiError(403, "this download link is invalid: it was altered or not issued by this server")
    try:
        data = orjson.loads(_unb64(payload))
        link = Link(key=str(data["k"]), filename=str(data["n"]), expires_at=int(data["x"]))
    except (ValueError, KeyError, TypeError):
        raise ApiError(403, "this download link is invalid") from None
    if (now if now is not None else time.time()) >= link.expires_at:
        raise ApiError(410, "this download link has expired; request a new export")
    return link
