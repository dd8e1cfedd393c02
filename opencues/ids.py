"""Identifier generators, and the one rule on the length of caller-chosen user ids."""

from __future__ import annotations

import secrets
import time
import uuid

# Ordered by ASCII so that ids sort by creation time, like the vendor's segment ids.
_PUSH_ALPHABET = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


def segment_id() -> str:
    """20 URL-safe characters: 8 encode the creation time in ms, 12 are random."""
    now = time.time_ns() // 1_000_000
    head = []
    for _ in range(8):
        head.append(_PUSH_ALPHABET[now % 64])
        now //= 64
    tail = "".join(secrets.choice(_PUSH_ALPHABET) for _ in range(12))
    return "".join(reversed(head)) + tail


def job_id() -> str:
    return str(uuid.uuid4())


def api_key_id() -> str:
    return str(uuid.uuid4())


def api_secret() -> str:
    """256 bits of randomness; stored only as a SHA-256 digest."""
    return secrets.token_urlsafe(32)


def account_id() -> str:
    return str(secrets.randbelow(90_000) + 10_000)


# User ids are arbitrary strings chosen by the caller, but PostgreSQL indexes them and a B-tree
# entry holds at most ~2.7 kB: a longer id would fail there (and only there). One limit on both
# databases, checked wherever a user id comes in, keeps that a 400 (or a failed row) instead.
MAX_USER_ID_BYTES = 1024
USER_ID_TOO_LONG = f"user id is longer than {MAX_USER_ID_BYTES} bytes (UTF-8)"
# A character is at most 4 bytes: an id of this many characters or fewer is never too long.
ALWAYS_SHORT_USER_ID = MAX_USER_ID_BYTES // 4


def user_id_too_long(user_id: str) -> bool:
    # Short ids (nearly all) are never encoded.
    return len(user_id) > ALWAYS_SHORT_USER_ID and len(user_id.encode("utf-8", "surrogatepass")) > MAX_USER_ID_BYTES
