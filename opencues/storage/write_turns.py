"""First come, first served turns at SQLite's one write lock, among one process's writers.

SQLite lets one connection write at a time; the others wait in its busy handler, which sleeps
between tries (up to 100 ms at a time) and so never catches a writer that commits and at once
begins again. An events import does exactly that, batch after batch: measured, a track call made
during a 200,000-row import waited for the whole import (1.2-1.5 s), and past the 30 s busy
timeout it would have failed. So the writers that hold the lock for long or often — import and
other job transactions, the request path's group commit — take a turn here first: each waits
for the ones that asked before it, then has the lock to itself (bar writers in other processes,
which still meet SQLite's busy handler). A thread that holds the turn may ask again (a
transaction inside a transaction): it goes on. ``waiting`` lets a long writer see that others
wait (a streamed import then ends its batch early: ``opencues.imports``).

PostgreSQL locks rows, not the database: it needs no turns (``Database.write_turn`` is a no-op).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class WriteTurns:
    """A ticket lock: ``turn()`` waits for every earlier ticket's holder, then holds the turn."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._issued = 0  # tickets handed out
        self._serving = 0  # the ticket whose turn it is
        self._holder: int | None = None  # the thread holding the turn
        self._depth = 0  # its turns inside its turn
        self._given_up: set[int] = set()  # tickets whose threads stopped waiting

    @contextmanager
    def turn(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._changed:
            if self._holder == me:
                self._depth += 1
            else:
                ticket = self._issued
                self._issued += 1
                try:
                    while ticket != self._serving:
                        self._changed.wait()
                except BaseException:  # gave up waiting: the turn passes over this ticket
                    self._given_up.add(ticket)
                    if ticket == self._serving:
                        self._next()
                    raise
                self._holder, self._depth = me, 1
        try:
            yield
        finally:
            with self._changed:
                self._depth -= 1
                if not self._depth:
                    self._holder = None
                    self._next()

    def _next(self) -> None:
        self._serving += 1
        while self._serving in self._given_up:
            self._given_up.remove(self._serving)
            self._serving += 1
        self._changed.notify_all()

    @property
    def waiting(self) -> int:
        """Writers waiting for their turn (not the one holding it)."""
        with self._changed:
            return self._issued - self._serving - len(self._given_up) - (self._holder is not None)
