"""SQLite writers of one process take turns at the write lock, first come, first served."""

from __future__ import annotations

import threading
import time

import pytest

from opencues.storage.write_turns import WriteTurns


def _wait_for(condition, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_writers_get_their_turns_in_the_order_they_asked():
    turns = WriteTurns()
    served = []

    def writer(name):
        with turns.turn():
            served.append(name)

    with turns.turn():
        threads = []
        for name in "abc":  # each asks only once the previous one waits
            thread = threading.Thread(target=writer, args=(name,))
            thread.start()
            threads.append(thread)
            _wait_for(lambda: turns.waiting == len(threads))
        time.sleep(0.01)
        assert served == []  # nobody writes while the turn is held
    for thread in threads:
        thread.join(5)
    assert served == ["a", "b", "c"] and turns.waiting == 0


def test_a_writer_that_asks_at_once_again_waits_behind_those_already_waiting():
    """The import's case: a batch commits and the next one asks for the turn straight away; the
    track write that asked during the batch goes first."""
    turns = WriteTurns()
    served = []

    def track():
        with turns.turn():
            served.append("track")

    with turns.turn():
        served.append("batch 1")
        other = threading.Thread(target=track)
        other.start()
        _wait_for(lambda: turns.waiting == 1)
    with turns.turn():
        served.append("batch 2")
    other.join(5)
    assert served == ["batch 1", "track", "batch 2"]


def test_the_holder_may_ask_again_inside_its_turn():
    turns = WriteTurns()
    with turns.turn():
        with turns.turn():
            pass
        assert turns.waiting == 0
    with turns.turn():  # released once, at the outer exit
        pass


def test_a_writer_that_stops_waiting_gives_its_turn_up():
    turns = WriteTurns()
    served = []

    class GaveUp(Exception):
        pass

    def impatient():
        with pytest.raises(GaveUp):
            with turns.turn():
                served.append("impatient")

    def patient():
        with turns.turn():
            served.append("patient")

    with turns.turn():
        wait = turns._changed.wait

        def interrupted(*args, **kwargs):
            if threading.current_thread().name == "impatient":
                raise GaveUp()
            return wait(*args, **kwargs)

        turns._changed.wait = interrupted
        first = threading.Thread(target=impatient, name="impatient")
        first.start()
        first.join(5)
        second = threading.Thread(target=patient, name="patient")
        second.start()
        _wait_for(lambda: turns.waiting == 1)
    second.join(5)
    assert served == ["patient"] and turns.waiting == 0


def test_the_request_paths_writes_wait_for_the_turn_on_sqlite(db):
    from opencues import accounts, events

    if db.is_postgres:
        pytest.skip("SQLite only: PostgreSQL locks rows, not the database")
    accounts.create_account(db, "acct1")
    stored = threading.Event()

    def track():
        events.track(db, "acct1", "u1", {"name": "e", "timestamp": "2021-01-01T00:00:00Z"})
        stored.set()

    with db.write_turn():
        thread = threading.Thread(target=track)
        thread.start()
        _wait_for(lambda: db._write_turns.waiting == 1)
        assert not stored.wait(0.05)
    thread.join(5)
    assert stored.is_set()
