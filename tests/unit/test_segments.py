import re
from datetime import datetime

import pytest
from sqlalchemy import func, select

from opencues import segments
from opencues.errors import ApiError
from opencues.storage.schema import segment_members
from tests.conftest import AccountClient, assert_problem, make_account

ISO_MS = "%Y-%m-%dT%H:%M:%S.%fZ"
CSV_HEADER = "id,name,description,created_at,created_by,updated_at,updated_by,url"


def create(api, **body):
    response = api.post("segments", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_returns_201_with_the_spec_shape(api):
    body = create(api, name="My best friends", description="A complete list of my best friends")
    assert list(body) == [
        "created_at", "created_by", "description", "id", "name", "updated_at", "updated_by", "url",
    ]  # fmt: skip
    assert body["name"] == "My best friends"
    assert body["description"] == "A complete list of my best friends"
    assert re.fullmatch(r"[-0-9A-Za-z_]{20}", body["id"])
    assert body["created_by"] == body["updated_by"] == api.creds.key
    assert body["url"] == f"http://testserver/v2/accounts/acct1/segments/{body['id']}"
    for field in ("created_at", "updated_at"):
        datetime.strptime(body[field], ISO_MS)
    assert api.get(f"segments/{body['id']}").json() == body


def test_create_without_description_stores_null(api):
    assert create(api, name="No description")["description"] is None


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 7}, "name"),
        ({"name": None}, "name"),
        ({"name": "ok", "description": 5}, "description"),
        ({"name": "ok", "color": "red"}, "color"),
        ({"name": "ok", "id": "mine"}, "id"),
    ],
)
def test_create_rejects_bad_bodies_naming_the_field(api, body, field):
    assert_problem(api.post("segments", json=body), 400, f"`{field}`")
    assert api.get("segments").json() == []


def test_create_accepts_only_json(api):
    response = api.post("segments", content="name=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(response, 415, "application/json")
    assert_problem(api.post("segments", content=b"[1, 2]", headers={"Content-Type": "application/json"}), 400)
    assert_problem(api.post("segments", content=b"{nope", headers={"Content-Type": "application/json"}), 400)


def test_list_in_creation_order_json_and_csv(api):
    first = create(api, name="Trial customers", description="Accounts, in trial")
    second = create(api, name="Paying customers")
    assert [s["id"] for s in api.get("segments").json()] == [first["id"], second["id"]]
    response = api.get("segments", headers={"Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert lines[0] == CSV_HEADER
    assert lines[1].startswith(f'{first["id"]},Trial customers,"Accounts, in trial",{first["created_at"]},')
    assert lines[2].split(",")[2] == ""  # null description is an empty cell
    single = api.get(f"segments/{second['id']}", headers={"Accept": "text/csv"}).text.splitlines()
    assert single[0] == CSV_HEADER and single[1].endswith(second["url"])


def test_create_answers_csv_on_request(api):
    response = api.post("segments", json={"name": "csv"}, headers={"Accept": "text/csv"})
    assert response.status_code == 201
    assert response.text.splitlines()[0] == CSV_HEADER


def test_update_changes_only_given_fields(api):
    segment = create(api, name="Friends", description="A complete list")
    response = api.patch(f"segments/{segment['id']}", json={"description": "An incomplete list"})
    assert response.status_code == 200
    updated = response.json()
    assert updated["description"] == "An incomplete list" and updated["name"] == "Friends"
    assert updated["created_at"] == segment["created_at"]
    assert updated["updated_at"] >= segment["updated_at"]
    renamed = api.patch(f"segments/{segment['id']}", json={"name": "Pals", "description": None}).json()
    assert renamed["name"] == "Pals" and renamed["description"] is None
    assert api.get(f"segments/{segment['id']}").json() == renamed


def test_update_by_another_key_records_updated_by(client, db, api):
    segment = create(api, name="Friends")
    other_key = AccountClient(client, make_account(db, "acct1"))
    updated = other_key.patch(f"segments/{segment['id']}", json={"name": "Renamed"}).json()
    assert updated["created_by"] == api.creds.key
    assert updated["updated_by"] == other_key.creds.key


def test_empty_update_is_a_no_op(api):
    segment = create(api, name="Friends")
    response = api.patch(f"segments/{segment['id']}", json={})
    assert response.status_code == 200
    assert response.json() == segment


@pytest.mark.parametrize(
    "body, field",
    [({"name": ""}, "name"), ({"name": None}, "name"), ({"description": []}, "description"), ({"id": "x"}, "id")],
)
def test_update_rejects_bad_bodies(api, body, field):
    segment = create(api, name="Friends")
    assert_problem(api.patch(f"segments/{segment['id']}", json=body), 400, f"`{field}`")
    assert api.get(f"segments/{segment['id']}").json() == segment


def test_update_accepts_only_json(api):
    segment = create(api, name="Friends")
    response = api.patch(f"segments/{segment['id']}", content="name,x", headers={"Content-Type": "text/csv"})
    assert_problem(response, 415)


def test_update_unknown_segment_is_404(api):
    assert_problem(api.patch("segments/nope", json={"name": "x"}), 404, "nope")
    assert_problem(api.patch("segments/nope", json={}), 404, "nope")


def test_delete_removes_segment_and_members(db, api):
    keep = create(api, name="Keep")
    gone = create(api, name="Gone")
    with db.begin() as conn:
        conn.execute(
            segment_members.insert(),
            [
                {"account_id": "acct1", "segment_id": gone["id"], "user_id": "u1"},
                {"account_id": "acct1", "segment_id": gone["id"], "user_id": "u2"},
                {"account_id": "acct1", "segment_id": keep["id"], "user_id": "u1"},
            ],
        )
    response = api.delete(f"segments/{gone['id']}")
    assert response.status_code == 200
    assert response.json() == {"status": 200, "title": "OK"}
    assert_problem(api.get(f"segments/{gone['id']}"), 404, gone["id"])
    assert [s["id"] for s in api.get("segments").json()] == [keep["id"]]
    with db.connect() as conn:
        remaining = conn.execute(select(segment_members.c.segment_id, func.count()).group_by("segment_id")).all()
    assert remaining == [(keep["id"], 1)]
    assert_problem(api.delete(f"segments/{gone['id']}"), 404)


def test_delete_answers_csv_on_request(api):
    segment = create(api, name="Gone")
    response = api.delete(f"segments/{segment['id']}", headers={"Accept": "text/csv"})
    assert response.text.splitlines() == ["status,title", "200,OK"]


def test_segments_are_per_account(client, db, api, other_account):
    segment = create(api, name="Mine")
    other = AccountClient(client, other_account)
    assert other.get("segments").json() == []
    assert_problem(other.get(f"segments/{segment['id']}"), 404)
    assert_problem(other.patch(f"segments/{segment['id']}", json={"name": "x"}), 404)
    assert_problem(other.delete(f"segments/{segment['id']}"), 404)
    # and a key cannot reach into another account's URL space at all
    assert_problem(client.get(api.url("segments"), auth=other_account.auth), 403)
    assert api.get(f"segments/{segment['id']}").json()["name"] == "Mine"


def test_read_only_key_can_read_but_not_write(client, db, api):
    segment = create(api, name="Mine")
    reader = AccountClient(client, make_account(db, "acct1", read_only=True))
    assert reader.get("segments").status_code == 200
    assert reader.get(f"segments/{segment['id']}").status_code == 200
    assert_problem(reader.post("segments", json={"name": "x"}), 403, "read-only")
    assert_problem(reader.patch(f"segments/{segment['id']}", json={"name": "x"}), 403, "read-only")
    assert_problem(reader.delete(f"segments/{segment['id']}"), 403, "read-only")
    assert [s["name"] for s in api.get("segments").json()] == ["Mine"]


def test_requires_credentials(client, account):
    assert_problem(client.get("/v2/accounts/acct1/segments"), 401)


def test_library_get_segment_raises_404(db, account):
    with pytest.raises(ApiError) as raised:
        segments.get_segment(db, "acct1", "missing")
    assert raised.value.status == 404
    created = segments.create_segment(db, "acct1", {"name": "lib"}, "cli")
    assert segments.get_segment(db, "acct1", created["id"])["created_by"] == "cli"
