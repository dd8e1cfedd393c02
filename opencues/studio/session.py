"""Studio sign-in: who the browser is, from a signed, expiring session cookie.

The cookie holds ``{"admin": fingerprint}`` or ``{"key": key_id}``, a random CSRF token and the
time it was issued, signed with HMAC-SHA256 under a key derived from the server secret
(``OPENCUES_SECRET_KEY``, else ``<data dir>/secret_key`` — the one that signs export links), so
every server process sharing that secret accepts it and nothing is stored server-side. It is
``HttpOnly``, ``SameSite=Strict``, ``Path=/studio`` and lasts ``OPENCUES_STUDIO_SESSION_HOURS``
from signing in (it is never renewed: a copied cookie dies on time however much it is used).

Nothing is trusted from the cookie beyond the signature: a key session re-reads its key on every
request (a revoked key signs out at once, and read-only is taken from the database), an admin
session holds an HMAC of the admin token and ends when ``OPENCUES_ADMIN_TOKEN`` changes. A browser
without a session gets an anonymous one, so the sign-in form carries a CSRF token too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
from starlette.requests import Request

from opencues import accounts, links
from opencues.errors import ApiError

COOKIE = "opencues_studio"
_PURPOSE = b"opencues studio session v1"


@dataclass(frozen=True)
class Session:
    """A browser's session: anonymous, the admin, or one API key of one account."""

    csrf: str
    admin: bool = False
    key_id: str | None = None
    account_id: str | None = None
    read_only: bool = False
    fresh: bool = False  # new in this request: its cookie must be sent (an existing one is never renewed)

    @property
    def signed_in(self) -> bool:
        return self.admin or self.key_id is not None

    def may_see(self, account_id: str) -> bool:
        return self.admin or account_id == self.account_id

    @property
    def may_write(self) -> bool:
        return self.admin or (self.key_id is not None and not self.read_only)

    @property
    def by(self) -> str:
        """The author recorded on what this session changes (``created_by``/``updated_by``)."""
        return self.key_id or "opencues-studio-admin"


def _signing_key(settings) -> bytes:
    return hmac.new(links.server_secret(settings), _PURPOSE, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _admin_fingerprint(settings) -> str | None:
    if not settings.admin_token:
        return None
    return _b64(hmac.new(_signing_key(settings), settings.admin_token.encode(), hashlib.sha256).digest()[:18])


def encode(settings, payload: dict) -> str:
    body = _b64(orjson.dumps({**payload, "t": int(time.time())}))
    signature = _b64(hmac.new(_signing_key(settings), body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def decode(settings, value: str, *, now: float | None = None) -> dict | None:
    """The payload of a cookie value, or None when it is forged, malformed or expired."""
    body, _, signature = value.partition(".")
    expected = _b64(hmac.new(_signing_key(settings), body.encode(), hashlib.sha256).digest())
    if not signature or not hmac.compare_digest(signature, expected):
        return None
    try:
        payload = orjson.loads(_unb64(body))
    except ValueError:
        return None
    issued = payload.get("t") if isinstance(payload, dict) else None
    if not isinstance(issued, int) or (now or time.time()) - issued > settings.studio_session_hours * 3600:
        return None
    return payload


def anonymous() -> Session:
    return Session(csrf=secrets.token_urlsafe(24), fresh=True)


def load(request: Request) -> Session:
    """The request's session (anonymous when there is none, or it is no longer valid)."""
    state = request.app.state
    raw = request.cookies.get(COOKIE)
    payload = decode(state.settings, raw) if raw else None
    if payload is None or not isinstance(payload.get("c"), str):
        return anonymous()
    csrf = payload["c"]
    if "admin" in payload:
        fingerprint = _admin_fingerprint(state.settings)
        if fingerprint is not None and hmac.compare_digest(str(payload["admin"]), fingerprint):
            return Session(csrf=csrf, admin=True)
        return Session(csrf=csrf)
    if isinstance(payload.get("key"), str):
        principal = accounts.active_key(state.db, payload["key"])
        if principal is not None:
            return Session(csrf=csrf, key_id=principal.key_id, account_id=principal.account_id, read_only=principal.read_only)
    return Session(csrf=csrf)


def sign_in(request: Request, form) -> Session:
    """A new session for the admin ``token``, or an API ``key`` and ``secret`` (401 otherwise).
    The CSRF token is new too: one seen before signing in is worth nothing after."""
    settings = request.app.state.settings
    token = (form.get("token") or "").strip()
    csrf = secrets.token_urlsafe(24)
    if token:
        if not settings.admin_token or not hmac.compare_digest(token.encode(), settings.admin_token.encode()):
            raise ApiError(401, "`token` is not the admin token (OPENCUES_ADMIN_TOKEN)")
        return Session(csrf=csrf, admin=True, fresh=True)
    key, secret = (form.get("key") or "").strip(), form.get("secret") or ""
    if not key or not secret:
        raise ApiError(400, "`key` and `secret` are required (or `token`, the admin token)")
    principal = accounts.authenticate(request.app.state.db, key, secret)
    if principal is None:
        raise ApiError(401, "invalid API key or secret")
    return Session(csrf=csrf, key_id=key, account_id=principal.account_id, read_only=principal.read_only, fresh=True)


def cookie_value(settings, session: Session) -> str:
    payload: dict = {"c": session.csrf}
    if session.admin:
        payload["admin"] = _admin_fingerprint(settings)
    elif session.key_id is not None:
        payload["key"] = session.key_id
    return encode(settings, payload)


def set_cookie(response, request: Request, session: Session) -> None:
    settings = request.app.state.settings
    response.set_cookie(
        COOKIE, cookie_value(settings, session), max_age=settings.studio_session_hours * 3600, path="/studio",
        httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )  # fmt: skip


def clear_cookie(response) -> None:
    response.delete_cookie(COOKIE, path="/studio", httponly=True, samesite="strict")


def check_csrf(session: Session, submitted) -> None:
    """403 unless the form's ``csrf_token`` is this session's."""
    if not isinstance(submitted, str) or not hmac.compare_digest(submitted.encode(), session.csrf.encode()):
        raise ApiError(403, "`csrf_token` is missing or does not match this session: reload the page and try again")
