"""HTTP Basic authentication, account scoping, read-only keys and per-key throttling."""

from __future__ import annotations

import base64
import binascii
import logging
import math
import threading
import time

from starlette.requests import Request

from opencues import accounts
from opencues.accounts import Principal
from opencues.errors import ApiError, bad_request

log = logging.getLogger("opencues")

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
    retry_after = limiter.hit(principal.key_id)
    if retry_after is not None:
        from opencues.metrics import RATE_LIMITED

        RATE_LIMITED.inc()
        raise ApiError(
            429,
            f"rate limit of {limiter.rate} exceeded for this API key; retry after {retry_after}s",
            {"Retry-After": str(retry_after)},
        )


class RateLimiter:
    """Per-key counters in memory, or in Redis (OPENCUES_REDIS_URL) so that several server
    processes share one budget.

    A Redis outage must not become the API's: every Redis call is bounded by
    ``redis_timeout_seconds`` (no retries), and when one fails the limiter counts in this
    process's memory instead — the limit then holds per process, as without Redis — logging one
    warning. A background thread checks every ``redis_retry_seconds`` whether Redis is back and,
    when it is, returns to it (one more line), so requests never wait on a Redis that is down."""

    def __init__(self, rate: str, redis_url: str | None = None, *, timeout: float = 0.5, retry_seconds: float = 5.0):
        from limits import parse
        from limits.errors import StorageError
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self.rate = parse(rate)
        self._storage_error = StorageError
        self.retry_seconds = retry_seconds
        self.local = MovingWindowRateLimiter(MemoryStorage())
        self.shared = None
        if redis_url:  # (redis-py imported only then: a fifth of a plain start's imports)
            from limits.storage import storage_from_string
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            storage = storage_from_string(
                redis_url,
                wrap_exceptions=True,  # every Redis failure as limits' StorageError
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
                retry=Retry(NoBackoff(), 0),  # redis-py otherwise retries with backoff: seconds per call
            )
            self.shared = MovingWindowRateLimiter(storage)
        self.active = self.shared or self.local
        self._switch = threading.Lock()
        self._closed = threading.Event()

    @property
    def shared_in_use(self) -> bool:
        return self.shared is not None and self.active is self.shared

    def hit(self, key: str) -> int | None:
        """Count a request of ``key``: None when allowed, else the seconds to wait."""
        strategy = self.active
        try:
            if strategy.hit(self.rate, key):
                return None
            stats = strategy.get_window_stats(self.rate, key)
        except self._storage_error as exc:
            self._fall_back(strategy, exc.storage_error)
            return self.hit(key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def window(self, key: str, *, hit: bool = True) -> tuple[bool, int, float]:
        """Count a request of ``key`` (unless ``hit`` is False) and describe its window, for
        routes that send rate-limit headers: (allowed, requests remaining, reset epoch seconds)."""
        strategy = self.active
        try:
            allowed = strategy.hit(self.rate, key) if hit else True
            stats = strategy.get_window_stats(self.rate, key)
        except self._storage_error as exc:
            self._fall_back(strategy, exc.storage_error)
            return self.window(key, hit=hit)
        return allowed, stats.remaining, stats.reset_time

    def _fall_back(self, failed, error: Exception) -> None:
        with self._switch:
            if self.active is not failed:  # another request got here first
                return
            self.active = self.local
        log.warning(
            "rate limiter: Redis is unreachable (%s: %s); counting requests in memory, per server process, until it is back",
            type(error).__name__, error,
        )  # fmt: skip
        threading.Thread(target=self._wait_for_redis, name="opencues-redis-probe", daemon=True).start()

    def close(self) -> None:
        """Stop waiting for Redis (the app is shutting down)."""
        self._closed.set()

    def _wait_for_redis(self) -> None:
        while not self._closed.wait(self.retry_seconds):
            if self.shared.storage.check():
                self.active = self.shared
                log.warning("rate limiter: Redis is back; counting requests there again")
                return


def build_rate_limiter(settings) -> RateLimiter | None:
    """The limiter of OPENCUES_RATE_LIMIT, or None when unlimited (an invalid rate: ValueError)."""
    if not settings.rate_limit:
        return None
    return RateLimiter(
        settings.rate_limit,
        settings.redis_url,
        timeout=settings.redis_timeout_seconds,
        retry_seconds=settings.redis_retry_seconds,
    )


def analytics_rate_limiter(state) -> RateLimiter:
    """The ``analytics/*`` routes' own per-account limit (OPENCUES_ANALYTICS_RATE_LIMIT), on the
    same storage as the per-key limiter: shared through Redis when OPENCUES_REDIS_URL is set, with
    the same fallback. Made at the first analytics request (``state``: the app's; the event loop's
    thread), so a plain start imports no rate-limit library; the setting itself is checked when
    the settings are read."""
    if state.analytics_rate_limiter is None:
        settings = state.settings
        state.analytics_rate_limiter = RateLimiter(
            settings.analytics_rate_limit,
            settings.redis_url,
            timeout=settings.redis_timeout_seconds,
            retry_seconds=settings.redis_retry_seconds,
        )
    return state.analytics_rate_limiter
