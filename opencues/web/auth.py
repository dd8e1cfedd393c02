"""HTTP Basic authentication, account scoping, read-only keys and per-key throttling."""

from __future__ import annotations

import base64
import binascii
import math
import time

from starlette.requests import Request

from opencues import accounts
from opencues.accounts import Principal
from opencues.errors import ApiError, bad_request

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="opencues", charset="UTF-8"'}


def _credentials(request: Request) -> tuple[str, str]:
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(401, "missing credentials: use HTTP Basic auth with API_KEY:API_SECRET", _CHALLENGE)
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise ApiError(401, "malformed Authorization header: expected HTTP Basic credentials", _CHALLENGE)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(401, "malformed Authorization header: credentials are not valid base64", _CHALLENGE) from None
    key, sep, secret = decoded.partition(":")
    if not sep or not key or "\x00" in key:  # no key holds NUL (and PostgreSQL refuses to compare one)
        raise ApiError(401, "malformed Authorization header: expected API_KEY:API_SECRET", _CHALLENGE)
    return key, secret


def authorize(request: Request, account_id: str, *, write: bool = False) -> Principal:
    """The caller's principal, checked for this account (403 otherwise) and, for writes, a
    key that may write. Counts the request against the key's rate limit (429 when over)."""
    key, secret = _credentials(request)
    principal = accounts.authenticate(request.app.state.db, key, secret)
    if principal is None:
        raise ApiError(401, "invalid API key or secret", _CHALLENGE)
    throttle(request, principal)
    if principal.account_id != account_id:
        raise ApiError(403, f"this API key does not grant access to account {account_id!r}")
    if write and principal.read_only:
        raise ApiError(403, "this API key is read-only")
    _refuse_nul_in_path(request)
    return principal


def _refuse_nul_in_path(request: Request) -> None:
    # PostgreSQL text cannot hold NUL, so a percent-encoded %00 in an id would otherwise be a 500
    # there (and a plain 404 on SQLite). Every account route passes through here first.
    for name, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            raise bad_request(f"`{name}` must not contain NUL characters")


def throttle(request: Request, principal: Principal) -> None:
    limiter = request.app.state.rate_limiter
    if limiter is None:
        return
    rate, strategy = limiter
    if not strategy.hit(rate, principal.key_id):
        from opencues.metrics import RATE_LIMITED

        RATE_LIMITED.inc()
        stats = strategy.get_window_stats(rate, principal.key_id)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise ApiError(
            429,
            f"rate limit of {rate} exceeded for this API key; retry after {retry_after}s",
            {"Retry-After": str(retry_after)},
        )


def build_rate_limiter(settings):
    """(rate, strategy) from OPENCUES_RATE_LIMIT, or None when unlimited. Counters live in
    memory, or in Redis (OPENCUES_REDIS_URL) so several server processes share one budget."""
    if not settings.rate_limit:
        return None
    from limits import parse
    from limits.storage import storage_from_string
    from limits.strategies import MovingWindowRateLimiter

    storage = storage_from_string(settings.redis_url or "memory://")
    return parse(settings.rate_limit), MovingWindowRateLimiter(storage)
