"""Groups (spec §3): ``groups/{id}/profile`` GET/PATCH, ``POST groups/{id}/users``, ``import/groups``;
and ``DELETE users/{id}/profile`` (§2), which ends a user's group membership. SQLite and PostgreSQL.

The app's worker thread is off (``job_workers=0``): ``drain`` runs the import jobs in the test."""

from __future__ import annotations

import csv
import io
import threading
from urllib.parse import quote

import orjson
import pytest
from sqlalchemy import select

from opencues import groups, imports, jobs, profiles, worker
from opencues.settings import Settings
from opencues.storage.schema import groups as groups_table
from tests.conftest import AccountClient, assert_problem, make_account

NDJSON = {"Content-Type": "application/ndjson"}
CSV = {"Content-Type": "text/csv"}


@pytest.fixture
def settings(database_url, tmp_path):
    return Settings(data_dir=tmp_path / "data", database_url=database_url, job_workers=0, import_batch_rows=3)


def drain(app) -> int:
    return worker.run_pending_jobs(app.state.db, app.state.file_store, app.state.settings)


def ndjson(*records) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def completed(api, response) -> dict:
    assert response.status_code == 202, response.text
    job = api.get(f"jobs/{response.json()['job_id']}").json()
    assert job["status"] == "COMPLETED", job
    assert job["name"] == "Import Groups"
    return job["events"][-1]["attributes"]


def stored_groups(db, account_id="acct1") -> dict:
    with db.connect() as conn:
        rows = conn.execute(select(groups_table.c.group_id, groups_table.c.attributes).where(groups_table.c.account_id == account_id))
        return {g: a for g, a in rows}


# --- group profile ----------------------------------------------------------------------------


def test_unknown_group_is_404_group_not_found(api):
    body = assert_problem(api.get("groups/g1/profile"), 404)
    assert body["detail"] == "group not found"


def test_patch_creates_then_merges_and_get_shows_group_id_first(api):
    assert api.patch("groups/g1/profile", json={"company": "burger appcues", "seats": 12, "tags": ["a"]}).json() == {
        "status": 200, "title": "OK"}  # fmt: skip
    api.patch("groups/g1/profile", json={"seats": 15, "tags": None, "tier": "enterprise", "active": False})
    response = api.get("groups/g1/profile")
    assert response.status_code == 200
    assert response.content.startswith(b'{"group_id":"g1"')
    assert response.json() == {"group_id": "g1", "company": "burger appcues", "seats": 15, "tier": "enterprise", "active": False}
    assert type(response.json()["seats"]) is int


def test_group_profile_csv_is_a_header_and_one_row(api):
    api.patch("groups/g1/profile", json={"company": "A, Inc.", "address": {"city": "Paris"}})
    response = api.get("groups/g1/profile", headers={"Accept": "text/csv"})
    assert response.headers["content-type"].startswith("text/csv")
    header, row = csv.reader(io.StringIO(response.text))
    assert header[0] == "group_id"  # then the properties as stored (PostgreSQL's JSONB orders keys its own way)
    assert dict(zip(header, row)) == {"group_id": "g1", "company": "A, Inc.", "address.city": "Paris"}


def test_a_group_id_in_the_body_is_never_a_property(api):
    api.patch("groups/g1/profile", json={"group_id": "other", "plan": "pro"})
    assert api.get("groups/g1/profile").json() == {"group_id": "g1", "plan": "pro"}
    assert_problem(api.get("groups/other/profile"), 404, "group not found")


def test_group_ids_are_percent_decoded_path_segments(api):
    group_id = "acme/eu west@1"
    api.patch(f"groups/{quote(group_id, safe='')}/profile", json={"x": 1})
    assert api.get(f"groups/{quote(group_id, safe='')}/profile").json() == {"group_id": group_id, "x": 1}


@pytest.mark.parametrize("body", [[1, 2], "text", 5])
def test_patch_with_a_non_object_body_is_400(api, body):
    assert_problem(api.patch("groups/g1/profile", json=body), 400, "object")


def test_patch_with_another_content_type_is_415(api):
    response = api.patch("groups/g1/profile", content=b"company=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(response, 415, "application/x-www-form-urlencoded")


def test_too_long_group_id_is_400_naming_it(api):
    assert_problem(api.patch(f"groups/{'g' * 1100}/profile", json={"a": 1}), 400, "`group_id`")


def test_groups_are_isolated_between_accounts(client, api, db):
    api.patch("groups/g1/profile", json={"mine": True})
    other = AccountClient(client, make_account(db, "acct2"))
    assert_problem(other.get("groups/g1/profile"), 404, "group not found")
    other.patch("groups/g1/profile", json={"theirs": True})
    assert api.get("groups/g1/profile").json() == {"group_id": "g1", "mine": True}


def test_read_only_keys_read_but_cannot_write_groups(client, api, db):
    api.patch("groups/g1/profile", json={"a": 1})
    reader = AccountClient(client, make_account(db, "acct1", read_only=True))
    assert reader.get("groups/g1/profile").status_code == 200
    assert_problem(reader.patch("groups/g1/profile", json={"a": 2}), 403, "read-only")
    assert_problem(reader.post("groups/g1/users", json={"user_ids": ["u"]}), 403, "read-only")
    assert_problem(reader.post("import/groups", content=ndjson({"group_id": "g"}), headers=NDJSON), 403, "read-only")


def test_concurrent_patches_of_one_group_both_land(db, account):
    errors = []

    def patch(key):
        try:
            groups.update_group(db, "acct1", "g", {key: 1})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=patch, args=(f"k{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert set(groups.get_group(db, "acct1", "g")) == {"group_id", *(f"k{i}" for i in range(8))}


# --- group users ------------------------------------------------------------------------------


def test_post_users_sets_each_users_current_group(api, db):
    api.patch("users/u1/profile", json={"name": "Harriet"})
    assert api.post("groups/g1/users", json={"user_ids": ["u1", "new-user", "u1"]}).json() == {"status": 200, "title": "OK"}
    assert groups.group_of(db, "acct1", "u1") == "g1" and groups.group_of(db, "acct1", "new-user") == "g1"
    assert api.get("users/new-user/profile").json() == {}  # unknown users get an empty profile
    assert api.get("users/u1/profile").json() == {"name": "Harriet"}  # attributes untouched
    assert api.get("groups/g1/profile").json() == {"group_id": "g1"}  # the group exists now
    api.post("groups/g2/users", json={"user_ids": ["u1"]})
    assert groups.group_of(db, "acct1", "u1") == "g2"  # one current group per user


def test_patch_on_group_users_is_405_allowing_post(api):
    response = api.patch("groups/g1/users", json={"user_ids": ["u1"]})
    assert_problem(response, 405)
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    "body, field",
    [({}, "`user_ids`"), ({"user_ids": []}, "`user_ids`"), ({"user_ids": "u1"}, "`user_ids`"),
     ({"user_ids": ["u1", 7]}, "`user_ids[1]`"), ({"user_ids": [""]}, "`user_ids[0]`"), ([["u1"]], "object")],
)  # fmt: skip
def test_bad_user_ids_are_400_naming_the_item(api, db, body, field):
    assert_problem(api.post("groups/g1/users", json=body), 400, field)
    assert groups.group_of(db, "acct1", "u1") is None


def test_group_users_with_another_content_type_is_415(api):
    assert_problem(api.post("groups/g1/users", content=b"u1\n", headers=CSV), 415, "text/csv")


# --- DELETE users/{id}/profile ------------------------------------------------------------------


def test_delete_profile_erases_attributes_and_group_but_keeps_events(api, db):
    api.patch("users/u1/profile", json={"plan": "pro"})
    api.post("groups/g1/users", json={"user_ids": ["u1"]})
    api.post("users/u1/events", json={"name": "Clicked", "timestamp": "2021-08-11T00:00:00Z"})
    assert api.delete("users/u1/profile").json() == {"status": 200, "title": "OK"}
    assert_problem(api.get("users/u1/profile"), 404)
    assert groups.group_of(db, "acct1", "u1") is None
    assert [e["name"] for e in api.get("users/u1/events").json()] == ["Clicked"]
    # A later PATCH re-creates it, empty but for what it sets, and without the old group.
    api.patch("users/u1/profile", json={"plan": "free"})
    assert api.get("users/u1/profile").json() == {"plan": "free"}
    assert groups.group_of(db, "acct1", "u1") is None


def test_delete_of_an_unknown_profile_is_404_user_not_found(api, client, db):
    assert assert_problem(api.delete("users/ghost/profile"), 404)["detail"] == "user not found"
    api.patch("users/u1/profile", json={"a": 1})
    other = AccountClient(client, make_account(db, "acct2"))
    assert other.delete("users/u1/profile").status_code == 404  # another account's user
    assert api.delete("users/u1/profile").status_code == 200
    assert api.delete("users/u1/profile").status_code == 404


def test_delete_profile_csv_and_read_only(api, client, db):
    api.patch("users/u1/profile", json={"a": 1})
    reader = AccountClient(client, make_account(db, "acct1", read_only=True))
    assert_problem(reader.delete("users/u1/profile"), 403, "read-only")
    response = api.delete("users/u1/profile", headers={"Accept": "text/csv"})
    assert response.text == "status,title\r\n200,OK\r\n"


def test_library_delete_profile(db, account):
    profiles.update_profile(db, "acct1", "u", {"a": 1})
    profiles.delete_profile(db, "acct1", "u")
    with pytest.raises(Exception) as raised:
        profiles.get_profile(db, "acct1", "u")
    assert raised.value.status == 404


# --- import/groups ----------------------------------------------------------------------------


def test_import_groups_in_every_form(api, app, db):
    api.patch("groups/g1/profile", json={"plan": "free", "keep": 1})
    responses = [
        api.post("import/groups", content=ndjson({"group_id": "g1", "plan": "pro"}, {"groupId": "g2", "seats": 3}), headers=NDJSON),
        api.post("import/groups", json=[{"group_id": "g3", "nested": {"a": [1]}}]),
        api.post("import/groups", json={"group_id": "g4", "one": True}),
        api.post("import/groups", content=b"group_id,tier,seats\n007,gold,12\n1e3,silver,\n", headers=CSV),
        api.post("import/groups", files={"file": ("groups.csv", b"groupId,region\ng5,eu\n", "text/csv")}),
    ]
    assert drain(app) == len(responses)
    for response in responses:
        attributes = completed(api, response)
        assert attributes["ingestions_failed"] == 0 and attributes["ingestions_filtered"] == 0
    assert stored_groups(db) == {
        "g1": {"plan": "pro", "keep": 1}, "g2": {"seats": 3}, "g3": {"nested": {"a": [1]}}, "g4": {"one": True},
        "007": {"tier": "gold", "seats": 12}, "1e3": {"tier": "silver"}, "g5": {"region": "eu"},
    }  # fmt: skip
    assert api.get("groups/007/profile").json() == {"group_id": "007", "tier": "gold", "seats": 12}


def test_import_groups_counts_bad_rows_without_blocking_good_ones(api, app, db):
    body = ndjson({"group_id": "g1", "a": 1}, {"plan": "no id"}, {"group_id": ""}, {"group_id": "g2", "groupId": "g3"},
                  {"group_id": "x" * 1100}, {"group_id": 42, "b": 2}) + b"not json\n"  # fmt: skip
    response = api.post("import/groups", content=body, headers=NDJSON)
    drain(app)
    attributes = completed(api, response)
    assert attributes["ingestions_completed"] == 2 and attributes["ingestions_failed"] == 5
    assert [e["line"] for e in attributes["errors"]] == [2, 3, 4, 5, 7]
    assert "`group_id`" in attributes["errors"][0]["reason"]
    assert stored_groups(db) == {"g1": {"a": 1}, "42": {"b": 2}}


def test_import_groups_limits_and_content_types(api, settings):
    assert_problem(api.post("import/groups", content=b"<x/>", headers={"Content-Type": "application/xml"}), 415)
    assert_problem(api.post("import/groups", content=b"", headers=NDJSON), 400, "empty")
    assert_problem(api.post("import/groups", content=b"[1,", headers={"Content-Type": "application/json"}), 400, "JSON")
    big = b"x" * (settings.max_body_bytes + 1)
    assert_problem(api.post("import/groups", content=big, headers=NDJSON), 413)


def test_import_groups_idempotency_key(api, app, db):
    headers = {**NDJSON, "Idempotency-Key": "groups-1"}
    body = ndjson({"group_id": "g1", "n": 1})
    first = api.post("import/groups", content=body, headers=headers).json()
    assert api.post("import/groups", content=body, headers=headers).json() == first
    assert_problem(api.post("import/groups", content=ndjson({"group_id": "g2"}), headers=headers), 422)
    assert drain(app) == 1 and len(api.get("jobs").json()) == 1


def test_import_groups_resumes_after_a_crash_writing_each_row_once(api, app, db, monkeypatch):
    """A worker dies in its 3rd batch (of 3 rows): the next claim resumes from row 6."""
    body = ndjson(*({"group_id": f"g{i:02d}", "n": i} for i in range(10)), {"group_id": "g00", "again": True})
    response = api.post("import/groups", content=body, headers=NDJSON)
    real = imports._merge_profiles_postgres if db.is_postgres else imports._merge_profiles_sqlite
    calls = {"n": 0}

    class Crash(BaseException):
        pass

    def crashing(*args, **kwargs):
        calls["n"] += 1
        real(*args, **kwargs)
        if calls["n"] == 3:
            raise Crash()

    name = "_merge_profiles_postgres" if db.is_postgres else "_merge_profiles_sqlite"
    monkeypatch.setattr(imports, name, crashing)
    with pytest.raises(Crash):
        drain(app)
    assert len(stored_groups(db)) == 6
    monkeypatch.setattr(imports, name, real)
    with db.begin() as conn:
        conn.exec_driver_sql("UPDATE jobs SET lease_expires_at = 0")
    assert drain(app) == 1
    attributes = completed(api, response)
    assert attributes["ingestions_completed"] == 11
    assert stored_groups(db) == {**{f"g{i:02d}": {"n": i} for i in range(1, 10)}, "g00": {"n": 0, "again": True}}
    assert [e["name"] for e in api.get(f"jobs/{response.json()['job_id']}").json()["events"]] == ["Ingesting", "Resumed", "Completed"]


def test_import_groups_job_name():
    assert jobs.JOB_NAMES["import_groups"] == "Import Groups"


def test_the_largest_user_list_is_applied_in_one_request(api, db):
    user_ids = [f"user-{i:05d}" for i in range(groups.MAX_USER_IDS)]
    assert api.post("groups/big/users", json={"user_ids": user_ids}).status_code == 200
    assert groups.group_of(db, "acct1", "user-09999") == "big" and groups.group_of(db, "acct1", "user-00000") == "big"
    assert_problem(api.post("groups/big/users", json={"user_ids": [*user_ids, "one-more"]}), 400, "`user_ids`")


def test_library_refuses_a_nul_in_a_group_id_on_both_databases(db, account):
    with pytest.raises(Exception) as raised:
        groups.update_group(db, "acct1", "g\x00", {"a": 1})
    assert raised.value.status == 400 and "`group_id`" in raised.value.detail
