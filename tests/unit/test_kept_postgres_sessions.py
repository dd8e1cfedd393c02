"""The test harness's kept PostgreSQL sessions (``tests/conftest.py``): a session handed from one
test to the next is the same backend process but nothing else — none of what its last user set."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.string import TextLoader

pytestmark = pytest.mark.postgres


def _pid(conn) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_a_closed_session_comes_back_as_new(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True, prepare_threshold=0) as conn:
        pid = _pid(conn)
        conn.execute("SET enable_seqscan = off")
        conn.execute("LISTEN somewhere")
        conn.execute("CREATE TEMPORARY TABLE scratch (n int)")
        conn.execute("SELECT pg_advisory_lock(42)")
        conn.execute("SELECT 1 FROM accounts")  # prepared (threshold 0): named on the server
        conn.adapters.register_loader("jsonb", TextLoader)

    with psycopg.connect(postgres_url) as conn:
        assert _pid(conn) == pid  # the same session…
        assert not conn.autocommit
        assert conn.execute("SHOW enable_seqscan").fetchone()[0] == "on"  # …with nothing of its last user's
        assert conn.execute("SELECT count(*) FROM pg_listening_channels()").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == 0
        assert conn.execute("SELECT to_regclass('pg_temp.scratch')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()").fetchone()[0] == 0
        assert conn.execute("SELECT '{\"a\": 1}'::jsonb").fetchone()[0] == {"a": 1}


def test_the_connection_that_handed_its_session_back_is_closed(postgres_url):
    conn = psycopg.connect(postgres_url)
    conn.close()
    assert conn.closed
    with pytest.raises(psycopg.OperationalError, match="closed"):
        conn.execute("SELECT 1")


def test_a_transaction_left_open_is_rolled_back(postgres_url):
    conn = psycopg.connect(postgres_url)
    pid = _pid(conn)
    conn.execute("INSERT INTO accounts (id, name, created_at) VALUES ('left-open', 'x', 0)")
    conn.execute("SELECT pg_advisory_xact_lock(42)")
    conn.close()  # in the transaction its first query began
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert _pid(conn) == pid
        assert conn.execute("SELECT count(*) FROM accounts WHERE id = 'left-open'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                            " AND pid = pg_backend_pid()").fetchone()[0] == 0  # fmt: skip


def test_a_session_the_server_ended_meanwhile_is_not_handed_out(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        ended = _pid(conn)
    with psycopg.connect(postgres_url, autocommit=True, application_name="killer") as killer:
        assert killer.execute("SELECT pg_terminate_backend(%s, 5000)", (ended,)).fetchone()[0]  # (waits for the end)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert _pid(conn) != ended


def test_only_the_sessions_own_database_keeps_sessions(postgres_url):
    """Anything else (a database a test makes, copies as a template or drops) sees its
    connections closed: here DROP DATABASE without FORCE right after a close succeeds."""
    name = postgres_url.rsplit("/", 1)[1] + "_other"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            with psycopg.connect(postgres_url.rsplit("/", 1)[0] + "/" + name):
                pass
        finally:
            admin.execute(f'DROP DATABASE "{name}"')


def test_sessions_of_the_databases_the_tests_open_are_kept(postgres_url):
    """What the tests open is SQLAlchemy's (it connects with an adapters context of its own): two
    ``Database`` objects one after the other share one backend, with SQLAlchemy's JSON types."""
    from opencues.storage import Database
    from tests.conftest import _driver_url

    pids = []
    for _ in range(2):
        db = Database(_driver_url(postgres_url))
        with db.connect() as conn:
            pids.append(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar())
            assert conn.exec_driver_sql("SELECT '{\"a\": 1}'::jsonb").scalar() == {"a": 1}
        db.dispose()
    assert pids[0] == pids[1]
