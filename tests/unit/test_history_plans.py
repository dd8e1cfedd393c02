"""The history and profile statements read the index shaped for them whatever the planner's
statistics say: none yet after a bulk load, misleading ones (taken when one user held every
event), and fresh ones — and, on PostgreSQL, in the generic plan a prepared statement switches to
after five executions as well as in a custom plan."""

import re

import pytest
from sqlalchemy import text

from opencues import events, profiles
from opencues.storage.schema import profiles as profiles_table
from tests.generated_events import generated_events

HOT = "hot-user"


def bulk_load(db, account_id: str, rows: int, users: int) -> None:
    with db.begin() as conn:
        conn.execute(generated_events(account_id, rows, user=HOT if users == 1 else "user", users=users,
                                      first_timestamp=1_600_000_000_000))  # fmt: skip
        conn.execute(profiles_table.insert().prefix_with("OR IGNORE", dialect="sqlite"), [
            {"account_id": account_id, "user_id": HOT if users == 1 else f"user{i}", "attributes": {"n": i},
             "created_at": 0, "updated_at": 0}
            for i in range(1 if users == 1 else 5_000)
        ])  # fmt: skip


def plans(db, statement, params: dict) -> list[str]:
    """The plans of ``statement`` exactly as the request path runs it (``Direct``'s compiled SQL)."""
    sql = db.direct.prepare(statement).sql
    conn = db.direct._connection()
    if db.is_sqlite:
        positional = db.direct.prepare(statement).bind(params)
        return [" ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, positional))]
    # (prepare=False: psycopg would prepare a statement run five times, and DEALLOCATE ALL drop it)
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", sql).replace("%%", "%")  # (run unescaped)
    found = ["\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params, prepare=False))]
    conn.execute("DEALLOCATE ALL", prepare=False)
    types = ", ".join("bigint" if n == "limit" or n.endswith("_ms") else "text" for n in names)
    conn.execute(f"PREPARE plan_probe ({types}) AS {numbered}", prepare=False)
    try:
        conn.execute("SET plan_cache_mode = force_generic_plan", prepare=False)
        from psycopg import sql as pg

        args = pg.SQL(", ").join(pg.Literal(params[n]) for n in names)
        found.append("\n".join(r[0] for r in conn.execute(pg.SQL("EXPLAIN EXECUTE plan_probe({})").format(args), prepare=False)))
    finally:
        conn.execute("RESET plan_cache_mode", prepare=False)
        conn.execute("DEALLOCATE plan_probe", prepare=False)
    return found


def assert_history_reads_its_index(db, account_id: str) -> None:
    for limit in (100, 1000):
        # The whole history, and a window of it as partitioned PostgreSQL reads first.
        statements = (events._HISTORY, events._history_since(1_600_000_000_000))
        params = {"account_id": account_id, "user_id": HOT, "limit": limit}
        if db.is_postgres:  # and the UNION ALL of windows it reads them with, every branch by the index
            statements += (events._history_by_windows((1_600_000_000_000, 1_590_000_000_000)),)
            # and the JSON page PostgreSQL writes from either
            statements += tuple(events._history_page(s) for s in statements if s is not statements[1])
            params |= {"page_head": "{", "zone_tail": 'Z"', "since_year_one_ms": 0, "lowest_ms": 0, "highest_ms": 1}
        for plan in (p for s in statements for p in plans(db, s, params)):
            if db.is_sqlite:
                assert "USING INDEX ix_events_user_time" in plan, plan
                assert "TEMP B-TREE" not in plan, plan  # no sort: the index delivers the order
            else:  # (a partitioned table's partitions read through their copies of the index)
                assert re.search(r"Index (Only )?Scan( Backward)? using (events_\w+_)?ix_events_user_time", plan), plan
                assert not re.search(r"\bSort\s+\(cost", plan) and "Seq Scan" not in plan, plan


def assert_profile_reads_its_key(db, account_id: str) -> None:
    for plan in plans(db, profiles._SELECT, {"account_id": account_id, "user_id": HOT}):
        if db.is_sqlite:
            assert "USING INDEX sqlite_autoindex_profiles_1" in plan or "USING PRIMARY KEY" in plan, plan
        else:
            assert re.search(r"Index Scan using profiles_pkey", plan), plan


def analyze(db) -> None:
    with db.begin() as conn:
        conn.execute(text("ANALYZE"))


def test_plans_with_no_statistics_after_a_bulk_load(db, account):
    bulk_load(db, account.account_id, 30_000, users=300)
    assert_history_reads_its_index(db, account.account_id)
    assert_profile_reads_its_key(db, account.account_id)


def test_plans_with_misleading_statistics(db, account):
    # Statistics taken while one user held every event, then many users' events loaded: the
    # account's time index looks as selective as the user's.
    bulk_load(db, account.account_id, 2_000, users=1)
    analyze(db)
    bulk_load(db, account.account_id, 30_000, users=300)
    assert_history_reads_its_index(db, account.account_id)
    assert_profile_reads_its_key(db, account.account_id)


def test_plans_with_fresh_statistics(db, account):
    bulk_load(db, account.account_id, 2_000, users=1)
    bulk_load(db, account.account_id, 30_000, users=300)
    analyze(db)
    assert_history_reads_its_index(db, account.account_id)
    assert_profile_reads_its_key(db, account.account_id)


@pytest.mark.parametrize("backend", ["postgres"], indirect=False)
def test_plans_after_the_statistics_counters_are_reset(db, account):
    bulk_load(db, account.account_id, 30_000, users=300)
    analyze(db)
    with db.begin() as conn:
        conn.execute(text("SELECT pg_stat_reset()"))
    assert_history_reads_its_index(db, account.account_id)
    assert_profile_reads_its_key(db, account.account_id)
