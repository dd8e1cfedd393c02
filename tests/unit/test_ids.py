"""The one rule on caller-chosen user ids, applied on every path of entry, and the property it
protects: every stored user id can be read back through the API."""

from __future__ import annotations

import random
from urllib.parse import quote

import orjson
import pytest
from sqlalchemy import select

from opencues import ids, segments
from opencues.settings import Settings
from opencues.storage.schema import events, profiles, segment_members
from opencues.worker import run_pending_jobs
from tests.conftest import assert_problem

# Ids real clients use, and ids built to be awkward in a URL, a CSV file or a database.
ACCEPTED = [
    "abc123", "harriet@bumbleborn.net", "first.last+tag@example.co.uk", "0b9ac6a4-7f4f-4c35-9a39-2e1bb4a8f0f4",
    "with space", "  padded  ", "a/b", "/leading", "trailing/", "//", "a/b/events", "a/../b", "...", "a.", "ü-ñ",
    "日本語のユーザー", "emoji 🎉👩‍👩‍👧", "100%", "%2F", "%00", "?#&=;", "+plus", "a\\b", 'quo"te', "it's", "<tag>",
    "zero\u200bwidth", "rtl\u202eltr", "nbsp\u00a0here", "line\u2028sep", "\ufeffbom", "007", "-1", "null", "1e3",
    "é" * 512,
]  # fmt: skip
REFUSED = [
    "", " ", "\t", " \u3000 ", "new\nline", "carriage\rreturn", "tab\there", "nul\x00", "del\x7f", "c1\x85next",
    "escape\x1b[0m", ".", "..", "é" * 512 + "x",
]  # fmt: skip


@pytest.mark.parametrize("user_id", ACCEPTED)
def test_the_rule_accepts_the_ids_clients_use(user_id):
    assert ids.user_id_problem(user_id) is None


@pytest.mark.parametrize("user_id", REFUSED)
def test_the_rule_refuses_ids_that_cannot_round_trip(user_id):
    assert ids.user_id_problem(user_id)


def test_reading_accepts_every_id_an_earlier_version_could_store():
    # Stored before the rule (tabs, a carriage return, blanks): still readable, never a 400.
    for user_id in ("tab\there", "carriage\rreturn", " ", ".."):
        assert ids.user_id_problem(user_id, reading=True) is None
    for user_id in ("", "nul\x00", "é" * 513):  # never storable on any backend
        assert ids.user_id_problem(user_id, reading=True)


def random_ids(count: int, seed: int = 14) -> list[str]:
    """Ids drawn from an alphabet of URL-, CSV- and SQL-significant characters, controls and
    non-ASCII letters (a seeded property test: the same ids every run)."""
    alphabet = list("aZ09 ./%?#&+@\\'\",;:=~_-") + ["\t", "\n", "\r", "\x00", "\x1f", "\x7f", "\x85", "é", "€", "🎉", "\u200b", "\u2028"]
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(count)]


# Ids holding ``%XX`` sequences too: the in-process client decodes a path once, as a server does
# (Starlette's TestClient decoded it twice, and such ids were left to tests/integration/test_user_ids.py).
PERCENT_IDS = ["%00", "%2F", "a%41b", "%0A", "%2e%2e", "%25", "100%25", "u%2500"]
TRICKY = list(dict.fromkeys(ACCEPTED + REFUSED + PERCENT_IDS + random_ids(60)))


@pytest.fixture
def settings(database_url, tmp_path):
    return Settings(data_dir=tmp_path / "data", database_url=database_url, job_workers=0)


def events_path(user_id: str) -> str:
    return f"users/{quote(user_id, safe='')}/events"


def profile_path(user_id: str) -> str:
    return f"users/{quote(user_id, safe='')}/profile"


def drain(app) -> None:
    run_pending_jobs(app.state.db, app.state.file_store, app.state.settings)


def job_errors(api, response) -> set[int]:
    assert response.status_code == 202, response.text
    job = api.get(f"jobs/{response.json()['job_id']}").json()
    assert job["status"] == "COMPLETED", job
    return {error["line"] for error in job["events"][-1]["attributes"].get("errors", [])}


def test_every_path_applies_one_rule_and_every_stored_id_reads_back(api, app, db):
    settings = app.state.settings
    settings.job_error_samples = len(TRICKY) * 2
    expected = {user_id: ids.user_id_problem(user_id) is None for user_id in TRICKY}
    assert sum(expected.values()) > 40 and sum(not ok for ok in expected.values()) > 20

    # Synchronous writes: a 400 naming `user_id` exactly when the rule refuses the id.
    for user_id in TRICKY:
        tracked = api.post(events_path(user_id), json={"name": "tracked", "timestamp": "2021-01-01T00:00:00Z"})
        patched = api.patch(profile_path(user_id), json={"via": "patch"})
        for response in (tracked, patched):
            if expected[user_id]:
                assert response.status_code == 200, (user_id, response.text)
            elif response.status_code != 404:  # a newline cannot even be routed
                assert_problem(response, 400, "`user_id`")

    # Bulk: the same ids, one row each; exactly the refused ones are row errors.
    rows = [{"user_id": user_id, "name": "imported", "timestamp": 1} for user_id in TRICKY]
    body = b"".join(orjson.dumps(row) + b"\n" for row in rows)
    imported_events = api.post("import/events", content=body, headers={"Content-Type": "application/ndjson"})
    body = b"".join(orjson.dumps({"user_id": user_id, "via": "import"}) + b"\n" for user_id in TRICKY)
    imported_profiles = api.post("import/profiles", content=body, headers={"Content-Type": "application/ndjson"})
    segment = segments.create_segment(db, api.creds.account_id, {"name": "s"}, "test")["id"]
    added = api.post(f"segments/{segment}/add_user_ids", json={"user_ids": TRICKY})
    drain(app)
    refused_lines = {line for line, user_id in enumerate(TRICKY, 1) if not expected[user_id]}
    for response in (imported_events, imported_profiles, added):
        assert job_errors(api, response) == refused_lines

    # What was stored is exactly the accepted ids, and every one of them reads back by URL.
    accepted = {user_id for user_id, ok in expected.items() if ok}
    with db.connect() as conn:
        assert set(conn.execute(select(events.c.user_id)).scalars()) == accepted
        assert set(conn.execute(select(profiles.c.user_id)).scalars()) == accepted
        assert set(conn.execute(select(segment_members.c.user_id)).scalars()) == accepted
    for user_id in accepted:
        history = api.get(events_path(user_id))
        assert history.status_code == 200, (user_id, history.text)
        assert sorted((e["user_id"], e["name"]) for e in history.json()) == [(user_id, "imported"), (user_id, "tracked")]
        profile = api.get(profile_path(user_id))
        assert profile.status_code == 200 and profile.json() == {"via": "import"}, (user_id, profile.text)


def test_csv_bulk_input_applies_the_rule_too(api, app, db):
    body = 'user_id,name,timestamp\nok,e,1\n"new\nline",e,2\n"tab\there",e,3\n..,e,4\n'.encode()
    response = api.post("import/events", content=body, headers={"Content-Type": "text/csv"})
    drain(app)
    assert job_errors(api, response) == {3, 5, 6}
    with db.connect() as conn:
        assert list(conn.execute(select(events.c.user_id)).scalars()) == ["ok"]
