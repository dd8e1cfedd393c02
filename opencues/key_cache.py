"""API keys remembered by each server process on PostgreSQL, forgotten through LISTEN/NOTIFY.

Without it every request pays a network round trip to look its key up. With it a key that
authenticated once is answered from memory, and revocation still reaches every process at once:

* a transaction that revokes or deletes keys sends ``NOTIFY opencues_api_keys`` (``announce``):
  PostgreSQL delivers it at commit, and only then, to one listener thread per process, which
  drops those keys' entries (payload: one key id, or ``*`` for all);
* the process that changed the keys drops them itself as soon as its transaction has committed
  (``forget_everywhere``): there a revoked key gets 401 on its very next request;
* the cache is used only while its listener is known to be connected: a heartbeat every
  ``HEARTBEAT_S``, and entries are not served once the last one is older than ``STALE_AFTER_S``.
  A lost or stalled connection therefore bypasses the cache within that bound, and a reconnect
  clears it (notifications may have been missed meanwhile);
* an entry records the digest of the secret that authenticated it: a different secret is never
  answered from memory (it goes to the database, and is refused there);
* a look-up that started before an invalidation does not store what it read (``generation``):
  a row read just before a revocation committed cannot outlive the revocation's notification;
* at most ``MAX_ENTRIES`` entries (the oldest stored goes first), each re-read at least every
  ``MAX_AGE_S`` (keys changed by hand in SQL, without a notification, are seen within that).

A revoked key is therefore refused by every process once the notification reached it
(milliseconds), and at worst after ``STALE_AFTER_S`` when its listener lost the database.
SQLite needs none of this: its look-up is a local read (docs/decisions.md).
"""

from __future__ import annotations

import hmac
import logging
import os
import select
import threading
import weakref
from time import monotonic
from typing import Any

log = logging.getLogger("opencues")

CHANNEL = "opencues_api_keys"
ALL_KEYS = "*"
MAX_ENTRIES = 10_000
HEARTBEAT_S = 0.5
STALE_AFTER_S = 2.0
MAX_AGE_S = 60.0
RECONNECT_S = 1.0

_caches: "weakref.WeakSet[KeyCache]" = weakref.WeakSet()


def announce(conn, key: str | None = None) -> None:
    """In a transaction that revokes or deletes API keys (``key``, or any): on PostgreSQL every
    process's cache forgets them when, and only if, the transaction commits."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_notify(%(channel)s, %(key)s)", {"channel": CHANNEL, "key": key or ALL_KEYS})


def forget_everywhere(key: str | None = None) -> None:
    """This process's caches forget ``key`` (every key when None): call once the transaction
    that changed it has committed, so that this process refuses it at once."""
    for cache in list(_caches):
        cache.forget(key)


class KeyCache:
    """One process's remembered keys: ``key id → (secret digest, principal, stored at)``."""

    def __init__(self, conninfo: str, *, max_entries: int = MAX_ENTRIES, max_age_s: float = MAX_AGE_S,
                 heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S):  # fmt: skip
        self._conninfo = conninfo
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self._entries: dict[str, tuple[str, Any, float]] = {}
        self._lock = threading.Lock()
        self._generation = 0  # one more at every invalidation
        self._alive_until = 0.0  # monotonic time until which the listener counts as connected
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._closed = False
        _caches.add(self)

    # -- requests -----------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Read before a look-up, handed to ``put``: nothing invalidated in between, or no store."""
        if self._thread is None:
            self._start()
        return self._generation

    def get(self, key: str, digest: str):
        """The principal remembered for ``key`` authenticated by a secret of this ``digest``, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_digest, principal, stored_at = entry
        now = monotonic()
        if now > self._alive_until or now - stored_at > self.max_age_s:
            return None
        if not hmac.compare_digest(stored_digest, digest):
            return None
        return principal

    def put(self, key: str, digest: str, principal, generation: int) -> None:
        with self._lock:
            now = monotonic()
            if generation != self._generation or now > self._alive_until:
                return
            entries = self._entries
            if key not in entries and len(entries) >= self.max_entries:
                del entries[next(iter(entries))]
            entries[key] = (digest, principal, now)

    def forget(self, key: str | None = None) -> None:
        with self._lock:
            self._generation += 1
            if key is None or key == ALL_KEYS:
                self._entries.clear()
            else:
                self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def listening(self) -> bool:
        """Whether entries are served (the listener's last heartbeat is recent enough)."""
        return monotonic() <= self._alive_until

    # -- the listener -------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._wake_r, self._wake_w = os.pipe()
            self._thread = threading.Thread(target=self._listen_forever, name="opencues-key-cache", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop listening (the database is being disposed); the cache is then bypassed."""
        with self._lock:
            self._closed = True
            self._alive_until = 0.0
            thread, self._thread = self._thread, None
        if thread is None:
            return
        os.write(self._wake_w, b"x")
        thread.join(timeout=5)
        if not thread.is_alive():  # (else still connecting: it sees ``_closed`` and ends; the pipe stays)
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)

    def _after_fork(self) -> None:
        # The listener thread did not come along: the child starts its own when first asked.
        self._thread = None
        self._alive_until = 0.0
        self._entries.clear()
        self._lock = threading.Lock()

    def _listen_forever(self) -> None:
        import psycopg

        failures = 0
        while not self._closed:
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5, **_KEEPALIVE) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Notifications sent before LISTEN are lost: start empty, and refuse what
                    # look-ups that began before this point would store.
                    self.forget()
                    if failures:
                        log.warning("API key cache: listening for revocations again")
                    failures = 0
                    self._serve(conn)
                    return
            except Exception as exc:  # noqa: BLE001 - lost database: bypass the cache, retry
                self._alive_until = 0.0
                self.forget()
                if not failures:
                    log.warning("API key cache: cannot listen for revocations (%s: %s); every request "
                                "reads its key from the database until it can", type(exc).__name__, exc)  # fmt: skip
                failures += 1
            if self._wait_for_wake(RECONNECT_S):
                return

    def _serve(self, conn) -> None:
        """Heartbeats and notifications until ``close`` (returns) or a lost connection (raises)."""
        sock = conn.fileno()
        next_beat = 0.0
        while True:
            now = monotonic()
            beat_started = None
            if now >= next_beat:
                beat_started = now
                conn.execute("SELECT 1")  # proves the connection works; notifications arriving meanwhile are queued
                next_beat = now + self.heartbeat_s
            for note in conn.notifies(timeout=0):  # queued ones first, then whatever the socket holds
                self.forget(note.payload)
            if beat_started is not None:
                # Only now: every notification committed before the heartbeat was answered is applied.
                self._alive_until = beat_started + self.stale_after_s
            ready, _, _ = select.select([sock, self._wake_r], [], [], max(0.0, next_beat - monotonic()))
            if self._wake_r in ready:
                return

    def _wait_for_wake(self, seconds: float) -> bool:
        ready, _, _ = select.select([self._wake_r], [], [], seconds)
        return bool(ready) or self._closed


# Named for pg_stat_activity. Detects a silently dead connection (a vanished host) in about 10 s instead of hours; the
# heartbeat stops the cache being served long before (``STALE_AFTER_S``).
_KEEPALIVE = {"application_name": "opencues-key-cache", "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2}


def _reset_after_fork() -> None:
    for cache in list(_caches):
        cache._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
