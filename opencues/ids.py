"""Identifier generators, and the one rule on caller-chosen user ids (``user_id_problem``)."""

from __future__ import annotations

import secrets
import time
import unicodedata
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


# The rule every path of entry applies (track, profile PATCH, event and profile imports, segment
# uploads), so that every stored id can be read back through the API by its URL
# (``users/{percent-encoded id}/…``). Anything else is a valid id: emails, UUIDs, spaces, slashes,
# any letter or symbol of Unicode, leading and trailing spaces (kept as sent).
# - empty or whitespace only: no user; CSV readers drop blank cells, so it could not be imported;
# - control characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F): a newline cannot be
#   routed (``users/a%0Ab/events`` matches no route), NUL cannot be stored by PostgreSQL, and
#   none of them survives a CSV cell, a log line or a terminal intact;
# - ``.`` and ``..``: URL libraries, curl and browsers remove them from a path as dot segments;
# - longer than ``MAX_USER_ID_BYTES``.
DOT_SEGMENTS = frozenset({".", ".."})


def user_id_problem(user_id: str, *, reading: bool = False) -> str | None:
    """What is wrong with a user id (a phrase to follow its field name), or None.

    ``reading=True`` is for look-ups (history, profile): only what no backend could ever have
    stored is refused, so that ids stored before this rule (a tab, a carriage return) stay
    readable, and what PostgreSQL cannot take as a parameter (NUL) is a 400 rather than a 500.
    """
    # The usual id, decided in three C calls: short, printable (so no control character), not blank.
    if len(user_id) <= ALWAYS_SHORT_USER_ID and user_id.isprintable() and not user_id.isspace() and user_id:
        if user_id not in DOT_SEGMENTS:
            return None
    if not user_id:
        return "must be a non-empty string"
    if "\x00" in user_id:
        return "must not contain NUL characters"
    if user_id_too_long(user_id):
        return USER_ID_TOO_LONG.replace("user id ", "", 1)
    if reading:
        return None
    # ``isprintable`` is one C call and True for nearly every id; only the others are looked at.
    if not user_id.isprintable():
        for character in user_id:
            if unicodedata.category(character) == "Cc":
                return f"must not contain control characters (U+{ord(character):04X})"
    if user_id.isspace():
        return "must be a non-empty string, not only whitespace"
    if user_id in DOT_SEGMENTS:
        return "must not be `.` or `..` (URLs drop them as dot segments)"
    return None
