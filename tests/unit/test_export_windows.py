"""Large exports rendered in time windows by helpers (``opencues.export_windows``): byte for byte
the file the worker renders alone (``test_exports.py`` covers that one in detail), for every shape
of data and request, through windows that are split, continued by id and cut by the limit. On
SQLite (helper processes) and PostgreSQL (helper connections in the worker's snapshot)."""

import csv
import dataclasses
import io
import shutil

import orjson
import pytest

from opencues import export_windows, exports
from opencues import events as events_lib
from opencues.storage import Database

T0 = 1_628_640_000_000  # 2021-08-11T00:00:00.000Z
BASE = {"email": "harriet@example.com", "format": "json", "conditions": [], "start_time": 0}


@pytest.fixture
def sqlite_db(tmp_path, sqlite_template):
    """For what only SQLite has: its query plans, in-memory databases."""
    path = tmp_path / "opencues.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def helped(monkeypatch) -> list[export_windows.Span]:
    """Every export is worth the helpers here; returns the spans they rendered."""
    monkeypatch.setattr(export_windows, "PARALLEL_MIN_ROWS", 0)
    spans = []
    real = export_windows.write

    def recording(plan, span, out, **kwargs):
        spans.append(span)
        return real(plan, span, out, **kwargs)

    monkeypatch.setattr(export_windows, "write", recording)
    return spans


@pytest.fixture
def small_windows(monkeypatch):
    """Windows of a few rows: tiny data then crosses many windows, splits and continuations."""
    monkeypatch.setattr(export_windows, "WINDOW_BYTES", 1)
    monkeypatch.setattr(export_windows, "PG_WINDOW_BYTES", 1)
    monkeypatch.setattr(export_windows, "MIN_WINDOW_ROWS", 2)


def insert(db, rows, account_id="acct1"):
    with db.begin() as conn:
        events_lib.insert_events(conn, account_id, [(r.get("user_id", "u1"), r.get("name", "ev"), r["timestamp"],
                                                     r.get("attributes", {})) for r in rows])  # fmt: skip


def both(db, helped, body, account_id="acct1") -> tuple[int, bytes]:
    """The export as the worker renders it alone and through helpers: asserted equal."""
    request = exports.validate_request({**BASE, **body})
    alone, through_helpers = io.BytesIO(), io.BytesIO()
    count = exports.write_export(db, account_id, request, alone)
    rendered_before = len(helped)
    assert exports.write_export(db, account_id, request, through_helpers, helpers=2) == count
    assert len(helped) == rendered_before + 1  # the helpers did render it
    assert through_helpers.getvalue() == alone.getvalue()
    return count, through_helpers.getvalue()


TRICKY = [
    "plain", "a,b", 'say "hi"', "line\nbreak", "cr\rhere", "crlf\r\n", "", " padded ", "ünïcødé ✓",
    "tab\there", "emoji 🎉", "unit\x1fsep", "record\x1esep", '",\n',
]  # fmt: skip


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_tricky_values_come_out_as_the_worker_alone_writes_them(db, helped, small_windows, fmt):
    rows = []
    for i, text in enumerate(TRICKY):
        rows.append({"timestamp": T0 + i, "name": text or "n", "user_id": f"user {text}",
                     "attributes": {"text": text, "mixed": [text, i, 1.5, True, None, {"k": text}][i % 6],
                                    "nested": {"deep": {"value": text}}, "list": [text, i], "n": i * 0.1,
                                    "big": 1e20, "flag": i % 2 == 0, "nothing": None}})  # fmt: skip
    insert(db, rows)
    count, data = both(db, helped, {"format": fmt})
    assert count == len(TRICKY)
    if fmt == "csv":
        parsed = list(csv.reader(io.StringIO(data.decode(), newline="")))
        assert [r[parsed[0].index("attributes.text")] for r in parsed[1:]] == TRICKY


@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize("body", [
    {"conditions": [["flow_id", "==", "f1"]]},
    {"conditions": [["or", ["user_segment_id", "==", "s1"], ["name", "like", "b%"]]]},
    {"conditions": [["attributes.n", ">", 10]], "time_zone": "-04:00"},
    {"start_time": T0 + 50, "end_time": T0 + 150},
    {"limit": 7},
    {"offset": 195},
    {"offset": 500},
])  # fmt: skip
def test_every_request_comes_out_as_the_worker_alone_writes_it(db, helped, small_windows, fmt, body):
    # Several events share each millisecond: windows are continued by id within one.
    insert(db, [{"timestamp": T0 + i // 3, "name": "ab"[i % 2] + str(i), "user_id": f"u{i % 7}",
                 "attributes": {"flowId": f"f{i % 3}", "n": i, **({"extra": i} if i % 10 == 0 else {})}}
                for i in range(600)])  # fmt: skip
    insert(db, [{"timestamp": T0 + i, "name": "theirs", "attributes": {"flowId": "f1"}} for i in range(50)], account_id="other")
    with db.begin() as conn:
        conn.exec_driver_sql("INSERT INTO segment_members (account_id, segment_id, user_id) VALUES ('acct1', 's1', 'u3')")
    count, data = both(db, helped, {"format": fmt, **body})
    assert b"theirs" not in data
    if "offset" not in body or body["offset"] < 600:
        assert count > 0


def test_limit_and_offset_pages_are_disjoint_and_complete(db, helped, small_windows):
    insert(db, [{"timestamp": T0 + i // 4, "name": f"e{i:03d}"} for i in range(203)])
    _, whole = both(db, helped, {})
    pages = [both(db, helped, {"limit": 20, "offset": offset})[1] for offset in range(0, 240, 20)]
    assert b"".join(pages) == whole and pages[-1] == b""


def test_a_crowded_millisecond_is_continued_by_id(db, helped, small_windows):
    insert(db, [{"timestamp": T0, "name": f"same instant {i:03d}"} for i in range(120)] + [{"timestamp": T0 + 1, "name": "next"}])
    count, data = both(db, helped, {})
    assert count == 121 and data.count(b"same instant") == 120


def test_a_window_holding_too_many_rows_is_split(db, helped, monkeypatch):
    monkeypatch.setattr(export_windows, "FIRST_WINDOWS", 1)  # the first window is the whole span
    monkeypatch.setattr(export_windows, "MIN_WINDOW_ROWS", 5)
    monkeypatch.setattr(export_windows, "WINDOW_BYTES", 1)
    monkeypatch.setattr(export_windows, "PG_WINDOW_BYTES", 1)
    sent = []
    real_send = export_windows._Schedule._send
    monkeypatch.setattr(export_windows._Schedule, "_send", lambda self, window: sent.append(window) or real_send(self, window))
    insert(db, [{"timestamp": T0 + i * 1000, "name": f"e{i}"} for i in range(300)])
    count, _ = both(db, helped, {})
    assert count == 300
    assert sent[0].end - sent[0].start == 299 * 1000 + 1  # the whole span, at first
    halves = sent[1:3]  # then its two halves
    assert (halves[0].start, halves[0].end, halves[1].end) == (sent[0].start, halves[1].start, sent[0].end)
    assert len(sent) > 10  # and so on, down to windows of about MIN_WINDOW_ROWS


def test_events_committed_after_the_export_started_are_left_out(db, helped, monkeypatch):
    insert(db, [{"timestamp": T0 + i, "name": f"before{i}"} for i in range(20)])
    real = export_windows.write

    def write_after_more_events(plan, span, out, **kwargs):
        insert(db, [{"timestamp": T0 + i, "name": f"during{i}"} for i in range(20)])  # in the span too
        return real(plan, span, out, **kwargs)

    monkeypatch.setattr(export_windows, "write", write_after_more_events)
    request = exports.validate_request({**BASE, "format": "csv"})
    out = io.BytesIO()
    assert exports.write_export(db, "acct1", request, out, helpers=2) == 20
    assert b"during" not in out.getvalue()


@pytest.mark.parametrize("conds", [[], [["timestamp", ">=", T0]], [["timestamp", "<", T0 + 9_000]],
                                   [["and", ["timestamp", ">", T0 - 1], ["timestamp", "<=", T0 + 9_999]]]])  # fmt: skip
def test_window_statements_seek_by_the_window_bounds(sqlite_db, conds):
    """Given other bounds on ``timestamp`` too, SQLite may seek by one of those and read on past
    the window to the end of the range: each window then costs a scan of the rest."""
    insert(sqlite_db, [{"timestamp": T0 + i, "name": "e"} for i in range(4000)])
    request = exports.validate_request({**BASE, "end_time": T0 + 10_000, "conditions": conds})
    statement = exports._window_rows(sqlite_db, "acct1", request, 10_000, [exports.events.c.id])
    sql, params = exports._for_helpers(sqlite_db, statement)
    with sqlite_db.connect() as conn:
        raw = conn.connection.driver_connection

        def steps(start: int) -> int:
            counted = [0]
            raw.set_progress_handler(lambda: counted.__setitem__(0, counted[0] + 1), 10)
            window = {"window_start": start, "window_end": start + 10, "window_after_id": 0, "window_rows": 100}
            assert len(raw.execute(sql, {**params, **window}).fetchall()) == 10
            raw.set_progress_handler(None, 0)
            return counted[0]

        first, last = steps(T0), steps(T0 + 3990)
    assert first < 2 * last + 10, (first, last)


def test_small_exports_and_in_memory_databases_skip_the_helpers(sqlite_db, helped, monkeypatch, tmp_path):
    monkeypatch.setattr(export_windows, "PARALLEL_MIN_ROWS", 50)
    insert(sqlite_db, [{"timestamp": T0 + i} for i in range(49)])
    request = exports.validate_request(BASE)
    assert exports.write_export(sqlite_db, "acct1", request, io.BytesIO(), helpers=2) == 49
    assert helped == []
    insert(sqlite_db, [{"timestamp": T0 + 100}])
    assert exports.write_export(sqlite_db, "acct1", request, io.BytesIO(), helpers=2) == 50
    assert len(helped) == 1
    memory = Database("sqlite://")
    memory.migrate()
    assert memory.sqlite_path is None
    insert(memory, [{"timestamp": T0 + i} for i in range(60)])
    assert exports.write_export(memory, "acct1", request, io.BytesIO(), helpers=2) == 60
    assert len(helped) == 1
    memory.dispose()


@pytest.mark.parametrize("breakage", ["error", "exit"])
def test_a_helper_that_fails_fails_the_export(db, monkeypatch, breakage):
    insert(db, [{"timestamp": T0 + i} for i in range(10)])
    plan_for = exports.helper_plan
    if breakage == "error":  # an error while rendering a window
        broken = {"sql": "SELECT no_such_function()", "params": {}}
        expected = "no_such_function"
    else:  # a helper that cannot even reach the database
        missing = "postgresql://nobody@127.0.0.1:1/none" if db.is_postgres else str(db.sqlite_path.parent / "missing" / "none.db")
        broken = {"database": missing}
        expected = "OperationalError" if db.is_postgres else r"exited \(code 1\)"
    monkeypatch.setattr(exports, "helper_plan", lambda *args: (lambda plan, header: (dataclasses.replace(plan, **broken), header))(*plan_for(*args)))
    request = exports.validate_request(BASE)
    with pytest.raises(export_windows.HelperFailed, match=expected):
        exports.write_export(db, "acct1", request, io.BytesIO(), helpers=2)


def test_csv_lines_from_separators():
    end, row = export_windows.CELL_END.encode(), export_windows.ROW_END.encode()
    plain = b"a" + end + b"b" + row + b"c" + end + b"" + row
    assert export_windows._csv(plain, 2, 2) == b"a,b\r\nc,\r\n"
    quoted = b"x" + end + b'say "hi", you' + row + b"y" + end + b"z" + row
    assert export_windows._csv(quoted, 2, 2) == b'x,"say ""hi"", you"\r\ny,z\r\n'
    assert export_windows._csv(b"", 0, 2) == b""
    # The data itself holds a separator: the counts disagree and the helper renders row by row.
    assert export_windows._csv(b"a" + end + b"b" + end + b"c" + row, 1, 2) is None
    assert export_windows._csv(b"a" + row + b"b" + end + b"c" + row, 1, 2) is None


@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize("conds", [[], [["flow_id", "==", "f"]], [["user_segment_id", "in", ["s1", "s2"]]],
                                   [["user_id", "in", ["u1", "u2"]]], [["user_id", "==", "u1"]],
                                   [["or", ["user_segment_id", "==", "s"], ["name", "like", "a%"]]]])  # fmt: skip
def test_window_plans_read_an_index_in_order_without_a_sort(sqlite_db, fmt, conds):
    # A sort would read (and sort) the rest of the export for every window.
    insert(sqlite_db, [{"timestamp": T0, "attributes": {"a": 1}}])
    with sqlite_db.connect() as conn:
        raw = conn.connection.driver_connection
        raw.execute("ANALYZE")  # statistics of a big account, where the user index looks tempting
        raw.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'events'")
        raw.executemany("INSERT INTO sqlite_stat1 VALUES ('events', ?, ?)",
                        [("ix_events_time", "10000000 10000000 1"), ("ix_events_user_time", "10000000 10000000 200 1")])
        raw.commit()
    sqlite_db.dispose()
    request = exports.validate_request({**BASE, "format": fmt, "conditions": conds})
    with sqlite_db.connect() as conn:
        plan, _ = exports.helper_plan(conn, sqlite_db, "acct1", request)
        window = {"window_start": T0, "window_end": T0 + 1, "window_after_id": 0, "window_rows": 10}
        details = " | ".join(row[-1] for row in conn.connection.driver_connection.execute(
            "EXPLAIN QUERY PLAN " + plan.sql, {**plan.params, **window}))  # fmt: skip
    assert "TEMP B-TREE" not in details and "ix_events_" in details, details


def test_the_export_job_uses_as_many_helpers_as_the_setting_says(db, helped, settings, monkeypatch):
    from opencues import accounts, jobs, worker
    from opencues.filestore import open_file_store

    accounts.create_account(db, "acct1")
    insert(db, [{"timestamp": T0 + i, "name": f"e{i}"} for i in range(30)])
    started = []
    for kind in (export_windows._ProcessHelper, export_windows._ConnectionHelper):
        monkeypatch.setattr(kind, "__init__", (lambda init: lambda self, plan: started.append(plan) or init(self, plan))(kind.__init__))
    for helpers in (0, 3):
        configured = settings.model_copy(update={"export_helpers": helpers})
        store = open_file_store(configured)
        request = exports.validate_request({**BASE, "format": "csv"})
        job = jobs.submit(db, "acct1", exports.JOB_KIND, params=exports.job_params(request, "http://test"))
        worker.run_pending_jobs(db, store, configured, timeout=60)
        done = next(e for e in jobs.get_job(db, "acct1", job.job_id)["events"] if e["name"] == "Completed")
        assert done["attributes"]["rows_exported"] == 30
        with store.open(exports.file_key("acct1", job.job_id, request)) as handle:
            assert handle.read().count(b"\r\n") == 31
        assert len(started) == helpers


@pytest.mark.parametrize("keys", [900, 2_100])
def test_wide_rows_come_out_as_the_worker_alone_writes_them(db, helped, small_windows, monkeypatch, keys):
    """900 cells a row, with the database rendering up to 1,000: for the helpers one balanced
    concatenation (SQLite refuses an expression deeper than 1,000; a flat one failed from ~490
    cells); with separator characters in the data, row by row. 2,100: more columns than a
    statement may select, rendered in Python."""
    monkeypatch.setattr(exports, "MAX_DATABASE_CELLS", 1_000)
    insert(db, [{"timestamp": T0 + i // 2, "name": f"e{i}",
                 "attributes": {f"k{j:04d}": j * 0.5 if j % 3 else TRICKY[(i + j) % len(TRICKY)] for j in range(keys) if (i + j) % 4}}
                for i in range(8)])  # fmt: skip
    assert exports.rendered_in_python(db, [("c", [])] * keys) == (keys > exports.MAX_DATABASE_CELLS)
    assert both(db, helped, {"format": "json"})[0] == 8
    _, data = both(db, helped, {"format": "csv"})
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert len(rows) == 9 and all(len(row) == 3 + keys for row in rows)
    assert rows[1][3 + 3] == TRICKY[3] and rows[1][3 + 1] == "0.5" and rows[1][3 + 4] == ""  # k0003, k0001, k0004 (absent)


def test_a_helper_whose_worker_went_away_exits_quietly(sqlite_template):
    """A worker killed before it sent the plan, or before it read the answers, leaves the helper
    no one to answer: it exits with status 0 and writes no traceback into the server's log."""
    import subprocess
    import sys

    helper = [sys.executable, "-m", "opencues.export_windows"]
    before_the_plan = subprocess.run(helper, input=b"", capture_output=True, timeout=60)
    assert (before_the_plan.returncode, before_the_plan.stderr) == (0, b"")

    plan = export_windows.RenderPlan(database=str(sqlite_template), sql="SELECT 1, 1, zeroblob(2000)", params={}, format="json")
    process = subprocess.Popen(helper, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the worker's end of the answers, gone before the first answer
    process.stdin.write(orjson.dumps(dataclasses.asdict(plan)) + b"\n" + orjson.dumps([0, 0, 1, 0, 1, 1]) + b"\n")
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    assert process.stderr.read() == b""
