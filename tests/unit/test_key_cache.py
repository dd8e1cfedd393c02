"""The per-process API key cache (PostgreSQL): served only while its listener is connected,
keyed by the secret's digest, forgotten on revocation — here and, through NOTIFY, elsewhere."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text, update

from opencues import accounts, key_cache
from opencues.key_cache import KeyCache
from opencues.storage import Database
from opencues.storage.schema import api_keys
from opencues.timestamps import now_ms
from tests.conftest import make_account


def _wait_until(condition, timeout: float = 5.0) -> float:
    """Seconds until ``condition()`` held (fails after ``timeout``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition not met in time"
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def pg(backend, db):
    if backend != "postgres":
        pytest.skip("the cache is PostgreSQL's")
    _wait_until(lambda: db.key_cache.generation is not None and db.key_cache.listening)
    return db


def _cached(db, key) -> bool:
    return key in db.key_cache._entries


def test_sqlite_reads_every_key_from_the_database(backend, db):
    if backend != "sqlite":
        pytest.skip("SQLite only")
    assert db.key_cache is None


def test_a_key_that_authenticated_is_answered_from_memory(pg):
    creds = make_account(pg, "acct1")
    principal = accounts.authenticate(pg, creds.key, creds.secret)
    assert principal is not None and _cached(pg, creds.key)
    # Revoked behind the cache's back (no notification): memory still answers, which proves
    # the second call did not read the database.
    with pg.begin() as conn:
        conn.execute(update(api_keys).where(api_keys.c.id == creds.key).values(revoked_at=now_ms()))
    assert accounts.authenticate(pg, creds.key, creds.secret) == principal


def test_a_wrong_secret_is_refused_even_when_the_key_is_cached(pg):
    creds = make_account(pg, "acct1")
    assert accounts.authenticate(pg, creds.key, creds.secret) is not None
    assert accounts.authenticate(pg, creds.key, creds.secret + "x") is None
    assert accounts.authenticate(pg, creds.key, "") is None
    assert accounts.authenticate(pg, creds.key, creds.secret) is not None  # the right one still works


def test_a_new_key_works_at_once_and_unknown_keys_are_not_remembered(pg):
    assert accounts.authenticate(pg, "key_not_yet", "s3cret") is None
    assert not _cached(pg, "key_not_yet")
    accounts.create_account(pg, "acct1")
    accounts.create_key(pg, "acct1", key="key_not_yet", secret="s3cret")
    assert accounts.authenticate(pg, "key_not_yet", "s3cret") is not None


def test_revoking_forgets_the_key_in_this_process_at_once(pg, settings):
    creds = make_account(pg, "acct1")
    other = Database(settings.resolved_database_url)  # another Database of this process (a CLI command's)
    try:
        assert accounts.authenticate(pg, creds.key, creds.secret) is not None
        accounts.revoke_key(other, creds.key)
        assert accounts.authenticate(pg, creds.key, creds.secret) is None  # no waiting for the notification
    finally:
        other.dispose()


def test_a_revocation_committed_elsewhere_is_forgotten_through_notify(pg):
    creds = make_account(pg, "acct1")
    assert accounts.authenticate(pg, creds.key, creds.secret) is not None
    # What another process's revoke_key sends: the UPDATE and its notification, nothing local.
    with pg.begin() as conn:
        conn.execute(update(api_keys).where(api_keys.c.id == creds.key).values(revoked_at=now_ms()))
        key_cache.announce(conn, creds.key)
        time.sleep(0.2)
        assert _cached(pg, creds.key)  # not before the commit
    assert _wait_until(lambda: not _cached(pg, creds.key), timeout=2) < 1
    assert accounts.authenticate(pg, creds.key, creds.secret) is None


def test_a_rolled_back_revocation_forgets_nothing(pg):
    creds = make_account(pg, "acct1")
    assert accounts.authenticate(pg, creds.key, creds.secret) is not None
    with pytest.raises(RuntimeError), pg.begin() as conn:
        key_cache.announce(conn, creds.key)
        raise RuntimeError("rolled back")
    time.sleep(0.3)
    assert _cached(pg, creds.key)


def test_deleting_an_account_forgets_its_keys(pg):
    from opencues import control

    creds = make_account(pg, "acct1")
    assert accounts.authenticate(pg, creds.key, creds.secret) is not None
    control.delete_account(pg, "acct1")
    assert accounts.authenticate(pg, creds.key, creds.secret) is None


def test_a_lost_listener_bypasses_the_cache_until_it_is_back(pg):
    creds = make_account(pg, "acct1")
    assert accounts.authenticate(pg, creds.key, creds.secret) is not None and _cached(pg, creds.key)
    with pg.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'opencues-key-cache' AND datname = current_database()"))  # fmt: skip
        # The revocation its notification would have carried is lost with the connection.
        conn.execute(update(api_keys).where(api_keys.c.id == creds.key).values(revoked_at=now_ms()))
    # Within the heartbeat's bound the stale entry is no longer served (cleared on reconnect).
    assert _wait_until(lambda: accounts.authenticate(pg, creds.key, creds.secret) is None, timeout=key_cache.STALE_AFTER_S + 1)
    _wait_until(lambda: pg.key_cache.listening)
    assert not _cached(pg, creds.key)


def test_a_look_up_overtaken_by_an_invalidation_stores_nothing(pg):
    cache = pg.key_cache
    generation = cache.generation
    cache.forget("somebody-else")  # a revocation arrived while the look-up read the database
    cache.put("key1", "digest", "principal", generation)
    assert not _cached(pg, "key1")
    cache.put("key1", "digest", "principal", cache.generation)
    assert cache.get("key1", "digest") == "principal"
    assert cache.get("key1", "other digest") is None


def test_the_cache_holds_at_most_max_entries(pg):
    cache = KeyCache(pg.key_cache._conninfo, max_entries=3)
    try:
        _wait_until(lambda: cache.generation is not None and cache.listening)
        for i in range(10):
            cache.put(f"key{i}", "d", i, cache.generation)
            assert len(cache) <= 3
        assert [cache.get(f"key{i}", "d") for i in range(10)] == [None] * 7 + [7, 8, 9]  # the oldest went first
    finally:
        cache.close()


def test_nothing_is_served_without_a_listener():
    cache = KeyCache("postgresql://postgres@127.0.0.1:1/nowhere")
    try:
        generation = cache.generation  # starts a listener that cannot connect
        time.sleep(0.2)
        cache.put("key1", "d", "principal", generation)
        assert cache.get("key1", "d") is None and not cache.listening
    finally:
        cache.close()


def test_entries_older_than_max_age_are_read_again(pg):
    cache = pg.key_cache
    cache.max_age_s = 0.05
    cache.put("key1", "d", "principal", cache.generation)
    assert cache.get("key1", "d") == "principal"
    time.sleep(0.1)
    assert cache.get("key1", "d") is None
