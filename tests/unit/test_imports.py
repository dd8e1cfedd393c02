"""Bulk imports and segment membership uploads, end to end through the in-process app.

The app's own worker thread is disabled here (``job_workers=0``) so that each test decides when
jobs run: ``drain(app)`` runs every pending job in the test's thread.
"""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from sqlalchemy import func, select

from opencues import attribute_keys, attributes as attribute_rules, jobs, segments
from opencues.settings import Settings
from opencues.storage.schema import events, profiles, segment_members
from opencues.worker import run_pending_jobs
from tests.conftest import AccountClient, assert_problem, make_account
from tests.nesting import nested, nested_json

NDJSON = {"Content-Type": "application/ndjson"}
CSV = {"Content-Type": "text/csv"}


@pytest.fixture
def settings(database_url, tmp_path):
    return Settings(data_dir=tmp_path / "data", database_url=database_url, job_workers=0, import_batch_rows=3)


def drain(app) -> int:
    state = app.state
    return run_pending_jobs(state.db, state.file_store, state.settings)


def ndjson(*records) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def job_of(api, response) -> dict:
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"job_id", "job_url", "status", "title"}
    assert body["status"] == 202 and body["title"] == "Accepted"
    assert body["job_url"] == f"http://testserver{api.url('jobs/' + body['job_id'])}"
    return body


def completed(api, job_id: str) -> dict:
    job = api.get(f"jobs/{job_id}").json()
    assert job["status"] == "COMPLETED", job
    return job["events"][-1]["attributes"]


def event_rows(db, account_id="acct1"):
    """The account's stored events in time order (on PostgreSQL neighbouring batches are written
    at once, so their ids interleave; ``imports._Lanes``)."""
    with db.connect() as conn:
        return conn.execute(
            select(events.c.user_id, events.c.name, events.c.timestamp, events.c.attributes)
            .where(events.c.account_id == account_id)
            .order_by(events.c.timestamp, events.c.id)
        ).all()


def profile_of(db, user_id, account_id="acct1"):
    with db.connect() as conn:
        return conn.execute(
            select(profiles.c.attributes).where(profiles.c.account_id == account_id, profiles.c.user_id == user_id)
        ).scalar()


def members(db, segment_id, account_id="acct1"):
    with db.connect() as conn:
        return sorted(
            conn.execute(
                select(segment_members.c.user_id).where(
                    segment_members.c.account_id == account_id, segment_members.c.segment_id == segment_id
                )
            ).scalars()
        )


# --------------------------------------------------------------------------- events


def test_import_events_ndjson(api, app, db):
    body = ndjson(
        {"user_id": "u1", "name": "Clicked thing", "timestamp": "2021-07-14T12:34:56Z", "color": "red"},
        {"user_id": "u2", "name": "Made purchase", "timestamp": "2021-07-14T13:57:22Z", "attributes": {"method": "visa"}},
    )
    job = job_of(api, api.post("import/events", content=body, headers=NDJSON))
    assert api.get(f"jobs/{job['job_id']}").json()["status"] == "IN_PROGRESS"
    assert drain(app) == 1
    attributes = completed(api, job["job_id"])
    assert attributes["ingestions_completed"] == 2 and attributes["ingestions_failed"] == 0
    assert attributes["requests_failed"] == 0 and attributes["runtime_ms"] >= 0
    assert "errors" not in attributes
    rows = event_rows(db)
    assert [(r.user_id, r.name) for r in rows] == [("u1", "Clicked thing"), ("u2", "Made purchase")]
    assert rows[0].timestamp == 1626266096000
    assert rows[0].attributes == {"color": "red"} and rows[1].attributes == {"method": "visa"}


def test_import_events_csv_and_csv_response(api, app, db):
    body = (
        b"user_id,name,timestamp,color,method\n"
        b"some-id-here,Clicked thing,2021-07-14T12:34:56Z,red,\n"
        b"another-user-id,Made purchase,2021-07-14T13:57:22Z,,visa\n"
    )
    response = api.post("import/events", content=body, headers={**CSV, "Accept": "text/csv"})
    assert response.status_code == 202
    lines = response.text.splitlines()
    assert lines[0] == "status,title,job_id,job_url"
    assert lines[1].startswith("202,Accepted,")
    drain(app)
    rows = event_rows(db)
    assert [r.attributes for r in rows] == [{"color": "red"}, {"method": "visa"}]


def test_import_events_multipart_upload(api, app, db):
    body = ndjson(*({"user_id": f"u{i}", "name": "e", "timestamp": i} for i in range(10)))
    job = job_of(api, api.post("import/events", files={"file": ("events.ndjson", body)}))
    drain(app)
    assert completed(api, job["job_id"])["ingestions_completed"] == 10
    assert [r.timestamp for r in event_rows(db)] == list(range(10))


def test_import_events_json_array(api, app, db):
    body = orjson.dumps([{"user_id": "u1", "name": "e", "timestamp": "2021-01-01T00:00:00Z"}])
    job = job_of(api, api.post("import/events", content=body, headers={"Content-Type": "application/json"}))
    drain(app)
    assert completed(api, job["job_id"])["ingestions_completed"] == 1


def test_bad_rows_are_counted_and_never_block_good_rows(api, app, db):
    body = b"\n".join(
        [
            b'{"user_id": "u1", "name": "ok", "timestamp": 1}',
            b"{not json",
            b'{"name": "no user", "timestamp": 1}',
            b'{"user_id": "u2", "name": "bad time", "timestamp": "yesterday"}',
            b'["not", "an", "object"]',
            b'{"user_id": "u3", "name": "ok", "timestamp": 2}',
        ]
    )
    job = job_of(api, api.post("import/events", content=body, headers=NDJSON))
    drain(app)
    attributes = completed(api, job["job_id"])
    assert attributes["ingestions_completed"] == 2
    assert attributes["ingestions_failed"] == 4
    assert [e["line"] for e in attributes["errors"]] == [2, 3, 4, 5]
    assert "JSON" in attributes["errors"][0]["reason"]
    assert "user_id" in attributes["errors"][1]["reason"]
    assert "timestamp" in attributes["errors"][2]["reason"]
    assert [r.user_id for r in event_rows(db)] == ["u1", "u3"]


def test_row_error_sample_is_capped(api, app, db, settings):
    settings.job_error_samples = 5
    body = b"\n".join([b"{broken"] * 12 + [b'{"user_id": "u", "name": "ok", "timestamp": 1}'])
    job = job_of(api, api.post("import/events", content=body, headers=NDJSON))
    drain(app)
    attributes = completed(api, job["job_id"])
    assert attributes["ingestions_failed"] == 12 and attributes["ingestions_completed"] == 1
    assert [e["line"] for e in attributes["errors"]] == [1, 2, 3, 4, 5]


def test_unreadable_request_is_400_and_creates_no_job(api, app):
    assert_problem(api.post("import/events", content=b"   \n", headers=NDJSON), 400)
    assert_problem(api.post("import/events", content=b"{oops", headers={"Content-Type": "application/json"}), 400)
    assert api.get("jobs").json() == []


def test_unsupported_content_type_is_415(api):
    assert_problem(api.post("import/events", content=b"x", headers={"Content-Type": "text/plain"}), 415, "text/plain")
    assert_problem(api.post("import/profiles", content=b"x", headers={"Content-Type": "application/xml"}), 415)
    assert api.get("jobs").json() == []


def test_body_over_the_limit_is_413(api, settings):
    settings.max_body_bytes = 100
    body = ndjson(*({"user_id": f"u{i}", "name": "e", "timestamp": i} for i in range(10)))
    assert_problem(api.post("import/events", content=body, headers=NDJSON), 413, "100")
    assert_problem(api.post("import/profiles", content=body, headers=NDJSON), 413)
    assert api.get("jobs").json() == []
    assert not list((settings.data_dir / "files").rglob("*.ndjson*"))


def test_upload_over_the_limit_is_413(api, settings):
    settings.max_upload_bytes = 100
    body = ndjson(*({"user_id": f"u{i}", "name": "e", "timestamp": i} for i in range(10)))
    assert_problem(api.post("import/events", files={"file": ("e.ndjson", body)}), 413)


def test_read_only_key_and_other_account_cannot_import(client, db, api):
    reader = AccountClient(client, make_account(db, "acct1", read_only=True))
    assert_problem(reader.post("import/events", content=b"{}", headers=NDJSON), 403)
    stranger = make_account(db, "acct2")
    response = client.post(api.url("import/events"), content=b"{}", headers=NDJSON, auth=stranger.auth)
    assert_problem(response, 403)


def test_jobs_and_rows_are_isolated_between_accounts(client, api, app, db):
    other = AccountClient(client, make_account(db, "acct2"))
    mine = job_of(api, api.post("import/events", content=ndjson({"user_id": "a", "name": "e", "timestamp": 1}), headers=NDJSON))
    theirs = job_of(other, other.post("import/events", content=ndjson({"user_id": "b", "name": "e", "timestamp": 1}), headers=NDJSON))
    drain(app)
    assert [j["id"] for j in api.get("jobs").json()] == [mine["job_id"]]
    assert [j["id"] for j in other.get("jobs").json()] == [theirs["job_id"]]
    assert_problem(api.get(f"jobs/{theirs['job_id']}"), 404)
    assert [r.user_id for r in event_rows(db, "acct1")] == ["a"]
    assert [r.user_id for r in event_rows(db, "acct2")] == ["b"]


def test_payload_file_is_removed_when_the_job_is_done(api, app, settings):
    api.post("import/events", content=ndjson({"user_id": "a", "name": "e", "timestamp": 1}), headers=NDJSON)
    stored = [p for p in (settings.data_dir / "files").rglob("*") if p.is_file()]
    assert len(stored) == 1
    drain(app)
    assert not [p for p in (settings.data_dir / "files").rglob("*") if p.is_file()]


def test_many_batches_write_every_row_once(api, app, db):
    body = ndjson(*({"user_id": f"u{i}", "name": "e", "timestamp": i} for i in range(50)))
    job = job_of(api, api.post("import/events", content=body, headers=NDJSON))
    drain(app)
    assert completed(api, job["job_id"])["ingestions_completed"] == 50
    assert [r.timestamp for r in event_rows(db)] == list(range(50))


def test_imported_events_record_their_attribute_keys_batch_by_batch(api, app, db, monkeypatch):
    recorded = []
    record = attribute_keys.record

    def recording(conn, account_id, pairs):
        recorded.append(set(pairs))
        record(conn, account_id, pairs)

    monkeypatch.setattr(attribute_keys, "record", recording)
    rows = [{"user_id": "u", "name": "e", "timestamp": i, "plan": "pro", "attributes": {"o": {"n": i}}} for i in range(5)]
    rows += [{"user_id": "u", "name": "e", "timestamp": 9, "plan": 3, "a.b": None},
             {"user_id": "u", "name": "e", "timestamp": 10, "o": "flat"}]  # fmt: skip
    job = job_of(api, api.post("import/events", content=ndjson(*rows, {"name": "no user"}), headers=NDJSON))
    drain(app)
    assert completed(api, job["job_id"])["ingestions_completed"] == 7
    with db.connect() as conn:
        assert attribute_keys.read(conn, "acct1") == {
            ("plan",): {"string", "number"}, ("o",): {"object", "string"}, ("o", "n"): {"number"}, ("a.b",): {"null"},
        }  # fmt: skip
    # batches of 3 input items, each recording its own distinct pairs once
    assert recorded[0] == {(("plan",), "string"), (("o",), "object"), (("o", "n"), "number")}
    assert len(recorded) == 3


# --------------------------------------------------------------------------- idempotency


def test_idempotency_key_returns_the_original_job(api, app, db, settings):
    body = ndjson({"user_id": "a", "name": "e", "timestamp": 1})
    headers = {**NDJSON, "Idempotency-Key": "import-1"}
    first = job_of(api, api.post("import/events", content=body, headers=headers))
    again = job_of(api, api.post("import/events", content=body, headers=headers))
    assert again == first
    assert len(api.get("jobs").json()) == 1
    assert len([p for p in (settings.data_dir / "files").rglob("*") if p.is_file()]) == 1
    drain(app)
    assert job_of(api, api.post("import/events", content=body, headers=headers)) == first
    drain(app)
    assert len(event_rows(db)) == 1


def test_idempotency_key_with_a_different_body_is_422(api, settings):
    headers = {**NDJSON, "Idempotency-Key": "k"}
    job_of(api, api.post("import/events", content=ndjson({"user_id": "a", "name": "e", "timestamp": 1}), headers=headers))
    other = api.post("import/events", content=ndjson({"user_id": "b", "name": "e", "timestamp": 1}), headers=headers)
    assert_problem(other, 422, "Idempotency-Key")
    assert_problem(api.post("import/profiles", content=b'{"user_id": "a"}', headers=headers), 422)
    assert len([p for p in (settings.data_dir / "files").rglob("*") if p.is_file()]) == 1


def test_idempotency_keys_are_per_account(client, api, db):
    other = AccountClient(client, make_account(db, "acct2"))
    body = ndjson({"user_id": "a", "name": "e", "timestamp": 1})
    headers = {**NDJSON, "Idempotency-Key": "same"}
    assert job_of(api, api.post("import/events", content=body, headers=headers)) != job_of(
        other, other.post("import/events", content=body, headers=headers)
    )


def test_malformed_idempotency_key_is_400(api):
    response = api.post("import/events", content=b"{}", headers={**NDJSON, "Idempotency-Key": "x" * 300})
    assert_problem(response, 400, "Idempotency-Key")


# --------------------------------------------------------------------------- profiles


def test_import_profiles_merges_into_existing_profiles(api, app, db):
    api.patch("users/u1/profile", json={"email": "old@example.com", "plan": "free"})
    body = (
        b"user_id,email,first_name,is_admin\n"
        b"u1,harriet@example.com,,\n"
        b"u2,,Snabe,\n"
        b"u3,bumbleborn@example.com,,true\n"
    )
    job = job_of(api, api.post("import/profiles", content=body, headers=CSV))
    drain(app)
    assert completed(api, job["job_id"])["ingestions_completed"] == 3
    assert profile_of(db, "u1") == {"email": "harriet@example.com", "plan": "free"}
    assert profile_of(db, "u2") == {"first_name": "Snabe"}
    assert profile_of(db, "u3") == {"email": "bumbleborn@example.com", "is_admin": True}


def test_import_profiles_ndjson_null_removes_and_repeats_apply_in_order(api, app, db):
    body = ndjson(
        {"userId": "u1", "a": 1, "b": 2},
        {"user_id": "u1", "b": None, "c": 3},
        {"user_id": "u2", "x": {"nested": True}},
        {"email": "no id"},
        {"user_id": "u1", "d": 4},
    )
    job = job_of(api, api.post("import/profiles", content=body, headers=NDJSON))
    drain(app)
    attributes = completed(api, job["job_id"])
    assert attributes["ingestions_completed"] == 4 and attributes["ingestions_failed"] == 1
    assert attributes["errors"][0]["line"] == 4
    assert profile_of(db, "u1") == {"a": 1, "c": 3, "d": 4}
    assert profile_of(db, "u2") == {"x": {"nested": True}}


def test_import_profiles_null_removes_a_stored_key_and_the_word_null_is_just_text(api, app, db):
    api.patch("users/u1/profile", json={"email": "x@example.com", "plan": "free"})
    body = ndjson(
        {"user_id": "u1", "plan": None, "bio": "null and void", "gone": None},
        {"user_id": "u2", "note": "null", "nothing": None},
    )
    job = job_of(api, api.post("import/profiles", content=body, headers=NDJSON))
    drain(app)
    assert completed(api, job["job_id"])["ingestions_completed"] == 2
    assert profile_of(db, "u1") == {"email": "x@example.com", "bio": "null and void"}
    assert profile_of(db, "u2") == {"note": "null"}


# --------------------------------------------------------------------------- segment membership


@pytest.fixture
def segment(db, account):
    return segments.create_segment(db, account.account_id, {"name": "Beta"}, "test")["id"]


def test_add_and_remove_user_ids_in_every_form(api, app, db, segment):
    forms = [
        dict(json={"user_ids": ["a", "b", "c"]}),
        dict(content=b'"c"\n"d"\n', headers=NDJSON),
        dict(content=b"user_id\ne\nf\n", headers=CSV),
        dict(content=b"g\nh\n", headers=CSV),
        dict(files={"file": ("ids.csv", b"userId\ni\n")}),
        dict(files={"file": ("ids.ndjson", b'"j"\n')}),
    ]
    for form in forms:
        job_of(api, api.post(f"segments/{segment}/add_user_ids", **form))
    drain(app)
    assert members(db, segment) == list("abcdefghij")
    job = job_of(api, api.post(f"segments/{segment}/remove_user_ids", json={"user_ids": ["a", "j", "zz"]}))
    drain(app)
    assert completed(api, job["job_id"])["ingestions_completed"] == 3
    assert members(db, segment) == list("bcdefghi")
    names = {j["name"] for j in api.get("jobs").json()}
    assert names == {"Add User IDs to Segment", "Remove User IDs from Segment"}


def test_adding_an_id_twice_is_harmless(api, app, db, segment):
    for _ in range(2):
        job = job_of(api, api.post(f"segments/{segment}/add_user_ids", json={"user_ids": ["a", "a", "b"]}))
        drain(app)
        assert completed(api, job["job_id"])["ingestions_completed"] == 3
    assert members(db, segment) == ["a", "b"]


def test_membership_of_an_unknown_segment_is_404(api, db):
    assert_problem(api.post("segments/nope/add_user_ids", json={"user_ids": ["a"]}), 404, "nope")
    assert_problem(api.post("segments/nope/remove_user_ids", json={"user_ids": ["a"]}), 404, "nope")
    assert api.get("jobs").json() == []


def test_segment_deleted_before_the_job_runs_fails_it(api, app, db, segment):
    job = job_of(api, api.post(f"segments/{segment}/add_user_ids", json={"user_ids": ["a"]}))
    segments.delete_segment(db, "acct1", segment)
    drain(app)
    detail = api.get(f"jobs/{job['job_id']}").json()
    assert detail["status"] == "FAILED"
    assert detail["events"][-1]["name"] == "Failed" and segment in detail["events"][-1]["attributes"]["reason"]
    assert members(db, segment) == []


def test_deleting_a_segment_deletes_its_membership(api, app, db, segment):
    api.post(f"segments/{segment}/add_user_ids", json={"user_ids": ["a", "b"]})
    drain(app)
    api.delete(f"segments/{segment}")
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(segment_members)).scalar() == 0


def test_bad_user_ids_are_counted(api, app, db, segment):
    job = job_of(api, api.post(f"segments/{segment}/add_user_ids", content=b'"a"\n42\n""\n"b"\n', headers=NDJSON))
    drain(app)
    attributes = completed(api, job["job_id"])
    assert attributes["ingestions_completed"] == 2 and attributes["ingestions_failed"] == 2
    assert [e["line"] for e in attributes["errors"]] == [2, 3]
    assert members(db, segment) == ["a", "b"]


def test_job_names_match_the_spec():
    assert jobs.JOB_NAMES["import_profiles"] == "Import Profiles"
    assert jobs.JOB_NAMES["import_events"] == "Import Events"


def test_import_profiles_multipart_csv_upload(api, app, db):
    upload = b"userId,plan\nu1,pro\nu2,free\n"
    job = job_of(api, api.post("import/profiles", files={"file": ("people.csv", upload, "text/csv")}))
    drain(app)
    assert completed(api, job["job_id"])["ingestions_completed"] == 2
    assert profile_of(db, "u2") == {"plan": "free"}


def test_segment_uploads_have_the_same_413_and_415(api, settings, segment):
    settings.max_body_bytes = 50
    big = {"user_ids": [f"user-{i}" for i in range(20)]}
    assert_problem(api.post(f"segments/{segment}/add_user_ids", json=big), 413)
    assert_problem(api.post(f"segments/{segment}/remove_user_ids", content=b"a", headers={"Content-Type": "text/plain"}), 415)
    assert api.get("jobs").json() == []


def test_the_servers_own_workers_start_a_submitted_job_at_once(settings, db):
    """Without the nudge, the in-process worker would find the job only at its next poll (60 s here)."""
    from opencues.web.app import create_app
    from tests.in_process_client import InProcessClient

    app = create_app(settings.model_copy(update={"job_workers": 1, "job_poll_seconds": 60}), db)
    with InProcessClient(app, base_url="http://testserver") as client:
        time.sleep(0.3)  # the worker has looked once and is idle
        api = AccountClient(client, make_account(db, "acct1"))
        job = job_of(api, api.post("import/events", content=ndjson({"user_id": "u", "name": "e", "timestamp": 1}), headers=NDJSON))
        deadline = time.monotonic() + 5
        while api.get(f"jobs/{job['job_id']}").json()["status"] != "COMPLETED":
            assert time.monotonic() < deadline, "the job waited for the next poll"
            time.sleep(0.05)


def test_event_values_are_stored_exactly_as_parsed(api, app, db):
    """SQLite's import reads the batch out of one JSON document: ids, names, timestamps and the
    attributes' JSON text must come out exactly as they went in."""
    tricky = {"q": 'say "hi"\n\ttab', "u": "é 😀 \u2028", "n": [1, {"x": None}], "f": 1e20, "neg": -0.5, "big": 2**63 - 1, "o": {}}
    body = ndjson(
        {"user_id": "007", "name": 'a "quoted", name', "timestamp": "2021-07-16T16:02:50.037Z", "attributes": tricky},
        {"userId": 42, "name": "ü", "timestamp": -1_000, "plain": True},
    )
    job = job_of(api, api.post("import/events", content=body, headers=NDJSON))
    drain(app)
    assert completed(api, job["job_id"])["ingestions_completed"] == 2
    with db.connect() as conn:
        rows = conn.execute(
            select(events.c.user_id, events.c.name, events.c.timestamp, events.c.attributes).order_by(events.c.timestamp.desc())
        ).all()
    assert [tuple(r) for r in rows] == [
        ("007", 'a "quoted", name', 1_626_451_370_037, tricky),
        ("42", "ü", -1_000, {"plain": True}),
    ]
    if db.is_sqlite:  # the stored text itself is orjson's
        with db.connect() as conn:
            text = conn.exec_driver_sql("SELECT attributes FROM events WHERE user_id = '007'").scalar_one()
        assert text == orjson.dumps(tricky).decode()


def test_event_batches_are_written_beside_the_parsing_thread_and_sqlite_profiles_inline(api, app, db, monkeypatch):
    from opencues import imports

    threads = []
    events_name = "_copy_events" if db.is_postgres else "_insert_events_sqlite"
    profiles_name = "_merge_profiles_postgres" if db.is_postgres else "_merge_profiles_sqlite"
    insert_events, merge_profiles = getattr(imports, events_name), getattr(imports, profiles_name)

    def events_writer(*args):
        threads.append(("events", threading.current_thread().name))
        insert_events(*args)

    def profiles_writer(*args):
        threads.append(("profiles", threading.current_thread().name))
        merge_profiles(*args)

    monkeypatch.setattr(imports, events_name, events_writer)
    monkeypatch.setattr(imports, profiles_name, profiles_writer)
    api.post("import/events", content=ndjson({"user_id": "u", "name": "e", "timestamp": 1}), headers=NDJSON)
    api.post("import/profiles", content=ndjson({"user_id": "u", "a": 1}), headers=NDJSON)
    drain(app)
    # SQLite's profile upsert retakes the GIL for every row: a parsing thread beside it would starve it.
    profiles_thread = "import-writer" if db.is_postgres else threading.current_thread().name
    assert threads == [("events", "import-writer"), ("profiles", profiles_thread)]


# --------------------------------------------------------------------------- hostile rows


@pytest.mark.parametrize("depth", [65, 254, 300, 1000])
def test_a_deeply_nested_event_row_is_a_row_error_and_good_rows_are_stored(api, app, db, depth):
    body = "\n".join([
        '{"user_id": "u1", "name": "ok", "timestamp": 1}',
        '{"user_id": "u2", "name": "deep", "timestamp": 2, "attributes": {"d": %s}}' % nested_json(depth),
        '{"user_id": "u3", "name": "deep too", "timestamp": 3, "d": %s}' % nested_json(depth),
        '{"user_id": "u4", "name": "ok", "timestamp": 4, "d": %s}' % nested_json(64),
    ]).encode()  # fmt: skip
    job = job_of(api, api.post("import/events", content=body, headers=NDJSON))
    drain(app)
    attributes = completed(api, job["job_id"])
    assert attributes["ingestions_completed"] == 2 and attributes["ingestions_failed"] == 2
    assert [e["line"] for e in attributes["errors"]] == [2, 3]
    assert all("`attributes.d`" in e["reason"] and "64" in e["reason"] for e in attributes["errors"])
    assert [r.user_id for r in event_rows(db)] == ["u1", "u4"]


@pytest.mark.parametrize("depth", [65, 254, 300, 1000])
def test_a_deeply_nested_profile_row_is_a_row_error_and_good_rows_are_stored(api, app, db, depth):
    body = ('{"user_id": "u1", "plan": "pro"}\n{"user_id": "u2", "d": %s}\n{"user_id": "u3", "d": %s}\n'
            % (nested_json(depth), nested_json(64))).encode()  # fmt: skip
    job = job_of(api, api.post("import/profiles", content=body, headers=NDJSON))
    drain(app)
    attributes = completed(api, job["job_id"])
    assert attributes["ingestions_completed"] == 2 and attributes["ingestions_failed"] == 1
    assert attributes["errors"][0]["line"] == 2 and "`d`" in attributes["errors"][0]["reason"]
    assert profile_of(db, "u1") == {"plan": "pro"} and profile_of(db, "u2") is None
    assert profile_of(db, "u3") == {"d": nested(64)}


def test_nul_in_event_rows_is_a_row_error_on_every_backend(api, app, db):
    body = ndjson(
        {"user_id": "u1", "name": "ok", "timestamp": 1},
        {"user_id": "u2", "name": "a\x00b", "timestamp": 2},
        {"user_id": "u\x003", "name": "x", "timestamp": 3},
        {"user_id": "u4", "name": "x", "timestamp": 4, "attributes": {"k": ["\x00"]}},
        {"user_id": "u5", "name": "x", "timestamp": 5, "k\x00": 1},
        {"user_id": "u6", "name": "\\u0000", "timestamp": 6, "k": "\\u0000"},  # backslash-u text: fine
    )
    job = job_of(api, api.post("import/events", content=body, headers=NDJSON))
    drain(app)
    attributes = completed(api, job["job_id"])
    assert attributes["ingestions_completed"] == 2 and attributes["ingestions_failed"] == 4
    reasons = [e["reason"] for e in attributes["errors"]]
    assert "`name`" in reasons[0] and "`user_id`" in reasons[1] and "`attributes.k[0]`" in reasons[2]
    assert all("NUL" in reason for reason in reasons)
    rows = event_rows(db)
    assert [(r.user_id, r.name) for r in rows] == [("u1", "ok"), ("u6", "\\u0000")]


def test_nul_in_a_csv_cell_is_a_row_error(api, app, db):
    body = b"user_id,name,timestamp,color\nu1,ok,1,red\nu2,a\x00b,2,red\nu3,ok,3,r\x00d\n"
    job = job_of(api, api.post("import/events", content=body, headers=CSV))
    drain(app)
    attributes = completed(api, job["job_id"])
    assert attributes["ingestions_completed"] == 1 and attributes["ingestions_failed"] == 2
    assert [r.name for r in event_rows(db)] == ["ok"]


def test_nul_in_profile_rows_is_a_row_error_on_every_backend(api, app, db):
    body = ndjson({"user_id": "u1", "plan": "pro"}, {"user_id": "u2", "plan": "a\x00"}, {"user_id": "u\x00", "plan": "x"},
                  {"user_id": "u4", "m": {"k\x00": 1}})  # fmt: skip
    job = job_of(api, api.post("import/profiles", content=body, headers=NDJSON))
    drain(app)
    attributes = completed(api, job["job_id"])
    assert attributes["ingestions_completed"] == 1 and attributes["ingestions_failed"] == 3
    assert profile_of(db, "u1") == {"plan": "pro"} and profile_of(db, "u2") is None and profile_of(db, "u4") is None


def test_nul_in_segment_uploads_is_a_row_error_on_every_backend(api, app, db, segment):
    for form in (dict(content=b'"a"\n"b\\u0000"\n"c"\n', headers=NDJSON), dict(json={"user_ids": ["a", "b\x00", "c"]}),
                 dict(content=b"a\nb\x00\nc\n", headers=CSV)):  # fmt: skip
        job = job_of(api, api.post(f"segments/{segment}/add_user_ids", **form))
        drain(app)
        attributes = completed(api, job["job_id"])
        assert attributes["ingestions_completed"] == 2 and attributes["ingestions_failed"] == 1
        assert attributes["errors"][0]["line"] == 2 and "NUL" in attributes["errors"][0]["reason"]
    assert members(db, segment) == ["a", "c"]


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", 253_402_300_800_000, -62_135_596_800_001])
def test_an_event_timestamp_outside_the_range_is_a_row_error(api, app, db, stamp):
    body = ndjson({"user_id": "u1", "name": "bad", "timestamp": stamp}, {"user_id": "u1", "name": "edge", "timestamp": "9999-12-31T23:59:59.999Z"})
    job = job_of(api, api.post("import/events", content=body, headers=NDJSON))
    drain(app)
    attributes = completed(api, job["job_id"])
    assert attributes["ingestions_completed"] == 1 and attributes["ingestions_failed"] == 1
    assert "`timestamp`" in attributes["errors"][0]["reason"]
    assert api.get("users/u1/events", params={"time_zone": "+01:00"}).status_code == 200


def test_too_many_attribute_keys_is_a_row_error(api, app, db, settings):
    settings.max_attribute_keys = 3
    events_body = ndjson({"user_id": "u1", "name": "ok", "timestamp": 1, "a": 1, "attributes": {"b": {"c": 1}}},
                         {"user_id": "u2", "name": "many", "timestamp": 2, "a": 1, "attributes": {"b": {"c": 1, "d": 2}}})  # fmt: skip
    profiles_body = ndjson({"user_id": "u1", "a": 1, "b": [{"c": 1}]}, {"user_id": "u2", "a": 1, "b": [{"c": 1}], "d": 1})
    for path, body in (("import/events", events_body), ("import/profiles", profiles_body)):
        job = job_of(api, api.post(path, content=body, headers=NDJSON))
        drain(app)
        attributes = completed(api, job["job_id"])
        assert attributes["ingestions_completed"] == 1 and attributes["ingestions_failed"] == 1
        assert attributes["errors"][0]["line"] == 2 and "more than 3" in attributes["errors"][0]["reason"]
    assert [r.user_id for r in event_rows(db)] == ["u1"]
    assert profile_of(db, "u2") is None


def test_attributes_the_text_shortcut_cannot_clear_are_walked_and_kept(api, app, db, settings):
    # Colons in values push the text's colon count past the limit: the row is walked, and kept.
    settings.max_attribute_keys = 3
    body = ndjson({"user_id": "u1", "name": "ok", "timestamp": 1, "url": "https://a:1/b:c:d"},
                  {"user_id": "u2", "name": "many", "timestamp": 2, "a": 1, "b": 2, "c": 3, "d": "x:y"})  # fmt: skip
    job = job_of(api, api.post("import/events", content=body, headers=NDJSON))
    drain(app)
    attributes = completed(api, job["job_id"])
    assert attributes["ingestions_completed"] == 1 and attributes["ingestions_failed"] == 1
    assert attributes["errors"][0]["line"] == 2 and "more than 3" in attributes["errors"][0]["reason"]
    assert [(r.user_id, r.attributes) for r in event_rows(db)] == [("u1", {"url": "https://a:1/b:c:d"})]


def test_a_walked_event_row_is_encoded_once(api, app, db, settings, monkeypatch):
    # The walk decides on the document the parse loop encoded already: no second encoding.
    settings.max_attribute_keys = 3
    encode_and_check = attribute_rules.encoded
    again = []
    monkeypatch.setattr(attribute_rules, "encoded", lambda document, **kw: again.append(document) or encode_and_check(document, **kw))
    job = job_of(api, api.post("import/events", content=ndjson({"user_id": "u1", "name": "ok", "timestamp": 1, "url": "https://a:1/b:c:d"}),
                               headers=NDJSON))  # fmt: skip
    drain(app)
    assert completed(api, job["job_id"])["ingestions_completed"] == 1
    assert again == []
    assert [r.attributes for r in event_rows(db)] == [{"url": "https://a:1/b:c:d"}]


def test_an_sqlite_events_batch_is_written_with_the_import_cache_then_the_usual_one(db):
    """The larger page cache lasts the batch only, also when the batch fails."""
    from opencues import imports

    class Recording:
        def __init__(self, fail: bool):
            self.statements, self.fail = [], fail

        def execute(self, sql, parameters=()):
            self.statements.append(sql if sql.startswith("PRAGMA") else "INSERT")
            if self.fail and sql.startswith("INSERT"):
                raise RuntimeError("disk full")

    row = '["u", "n", 1, "{}", null]'
    raw = Recording(fail=False)
    with imports._sqlite_cache(raw, 96, 32):
        imports._insert_events_sqlite(raw, "acct1", [row] * 11)  # one statement a write
        imports._insert_events_sqlite(raw, "acct1", [row])
    assert raw.statements == ["PRAGMA cache_size=-98304", "INSERT", "INSERT", "PRAGMA cache_size=-32768"]
    raw = Recording(fail=True)
    with pytest.raises(RuntimeError), imports._sqlite_cache(raw, 96, 32):
        imports._insert_events_sqlite(raw, "acct1", [row])
    assert raw.statements == ["PRAGMA cache_size=-98304", "INSERT", "PRAGMA cache_size=-32768"]


def test_imported_events_get_flow_id_and_hourly_counts(api, app, db):
    from opencues import event_counts
    from opencues.storage.schema import event_name_hours

    body = ndjson(*[{"user_id": f"u{i}", "name": ["a", "b"][i % 2], "timestamp": f"2021-07-14T1{i % 3}:00:00Z",
                     "attributes": {"flowId": ["f1", 2, None][i % 3]}} for i in range(8)])  # fmt: skip
    job = job_of(api, api.post("import/events", content=body, headers=NDJSON))
    assert drain(app) == 1 and completed(api, job["job_id"])["ingestions_completed"] == 8
    with db.connect() as conn:
        flow_ids = conn.execute(select(events.c.flow_id).order_by(events.c.user_id)).scalars().all()  # u0-u7
        query = select(event_name_hours.c.name, event_name_hours.c.hour, event_name_hours.c.events).order_by("name", "hour")
        written = conn.execute(query).all()
        event_counts.rebuild(conn)
        assert conn.execute(query).all() == written
    assert flow_ids == ["f1", "2", None] * 2 + ["f1", "2"]
    assert sum(c for _, _, c in written) == 8 and len(written) == 6
