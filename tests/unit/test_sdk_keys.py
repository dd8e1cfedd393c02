import hashlib

import pytest
from sqlalchemy import select

from opencues import sdk_keys
from opencues.storage.schema import sdk_keys as sdk_keys_table
from tests.conftest import AccountClient, assert_problem, make_account


def test_create_shows_the_secret_once_and_stores_only_its_digest(db, api):
    response = api.post("sdk_keys", json={"name": "web", "tag_field": "userId", "account_id": "ignored"})
    assert response.status_code == 201
    created = response.json()
    assert list(created) == [*sdk_keys.COLUMNS, "secret"]
    assert created["name"] == "web" and created["tag_field"] == "userId"
    assert created["enforcement_mode"] is False and created["secure_data_ingest"] is False
    assert len(created["secret"]) >= 40 and created["created_at"].endswith("Z")
    with db.connect() as conn:
        stored = conn.execute(select(sdk_keys_table.c.secret_sha256)).scalar_one()
    assert stored == hashlib.sha256(created["secret"].encode()).hexdigest()
    shown = api.get(f"sdk_keys/{created['id']}").json()
    assert "secret" not in shown and shown == {k: v for k, v in created.items() if k != "secret"}
    assert api.get("sdk_keys").json() == [shown]


def test_list_get_delete(api):
    first = api.post("sdk_keys", json={"name": "one"}).json()
    second = api.post("sdk_keys", json={"name": "two"}).json()
    assert [k["id"] for k in api.get("sdk_keys").json()] == [first["id"], second["id"]]
    assert first["tag_field"] is None
    response = api.delete(f"sdk_keys/{first['id']}")
    assert response.status_code == 200 and response.json() == {"status": 200, "title": "OK"}
    assert [k["id"] for k in api.get("sdk_keys").json()] == [second["id"]]
    for method in ("GET", "DELETE"):
        assert assert_problem(api.request(method, f"sdk_keys/{first['id']}"), 404)["detail"] == "sdk key not found"


def test_at_most_five_keys_per_account(client, db, api):
    for index in range(sdk_keys.MAX_KEYS_PER_ACCOUNT):
        assert api.post("sdk_keys", json={"name": f"k{index}"}).status_code == 201
    body = assert_problem(api.post("sdk_keys", json={"name": "sixth"}), 400)
    assert body["detail"] == "maximum of 5 SDK keys per account"
    assert len(api.get("sdk_keys").json()) == 5
    other = AccountClient(client, make_account(db, "acct2"))
    assert other.post("sdk_keys", json={"name": "theirs"}).status_code == 201  # a limit per account


@pytest.mark.parametrize("switch", sdk_keys.SWITCHES)
def test_switches_turn_on_and_off_idempotently(api, switch):
    key = api.post("sdk_keys", json={"name": "k"}).json()
    for verb, expected in (("enable", True), ("enable", True), ("disable", False), ("disable", False)):
        response = api.post(f"sdk_keys/{key['id']}/{switch}/{verb}")
        assert response.status_code == 200 and response.json() == {"status": 200, "title": "OK"}
        shown = api.get(f"sdk_keys/{key['id']}").json()
        assert shown[switch] is expected
        assert all(shown[s] is False for s in sdk_keys.SWITCHES if s != switch)
    assert_problem(api.post(f"sdk_keys/nope/{switch}/enable"), 404, "sdk key not found")


@pytest.mark.parametrize("path", ["{id}/tag_field", "{id}"])
def test_tag_field_can_be_set_and_cleared(api, path):
    key = api.post("sdk_keys", json={"name": "k"}).json()
    url = "sdk_keys/" + path.format(id=key["id"])
    response = api.patch(url, json={"tag_field": "email"})
    assert response.status_code == 200 and response.json()["tag_field"] == "email"
    assert api.patch(url, json={"tag_field": None}).json()["tag_field"] is None
    assert_problem(api.patch(url, json={}), 400, "`tag_field` is required")
    assert_problem(api.patch(url, json={"tag_field": 3}), 400, "`tag_field`")
    assert_problem(api.patch("sdk_keys/" + path.format(id="nope"), json={"tag_field": "x"}), 404, "sdk key not found")


@pytest.mark.parametrize(
    "body, field",
    [({}, "`name` is required"), ({"name": ""}, "`name`"), ({"name": 5}, "`name`"), ({"name": "k", "tag_field": ["x"]}, "`tag_field`")],
)
def test_create_names_the_bad_field(api, body, field):
    assert_problem(api.post("sdk_keys", json=body), 400, field)
    assert api.get("sdk_keys").json() == []


def test_create_refuses_other_content_types_and_bad_json(api):
    assert_problem(api.post("sdk_keys", content=b"name=k", headers={"Content-Type": "text/plain"}), 415)
    assert_problem(api.post("sdk_keys", content=b"[1]", headers={"Content-Type": "application/json"}), 400)


def test_keys_are_per_account_and_read_only_keys_only_read(client, db, api):
    key = api.post("sdk_keys", json={"name": "k"}).json()
    other = AccountClient(client, make_account(db, "acct2"))
    assert other.get("sdk_keys").json() == []
    assert_problem(other.get(f"sdk_keys/{key['id']}"), 404)
    assert_problem(other.delete(f"sdk_keys/{key['id']}"), 404)
    reader = AccountClient(client, make_account(db, "acct1", read_only=True))
    assert reader.get("sdk_keys").status_code == 200
    assert reader.get(f"sdk_keys/{key['id']}").status_code == 200
    for method, path, body in (
        ("POST", "sdk_keys", {"name": "x"}), ("DELETE", f"sdk_keys/{key['id']}", None),
        ("PATCH", f"sdk_keys/{key['id']}/tag_field", {"tag_field": "x"}),
        ("POST", f"sdk_keys/{key['id']}/enforcement_mode/enable", None),
    ):  # fmt: skip
        assert_problem(reader.request(method, path, json=body), 403, "read-only")
    assert api.get(f"sdk_keys/{key['id']}").json()["enforcement_mode"] is False


def test_sdk_keys_as_csv(api):
    key = api.post("sdk_keys", json={"name": "k"}, headers={"Accept": "text/csv"})
    assert key.status_code == 201
    assert key.text.splitlines()[0] == "id,name,tag_field,enforcement_mode,secure_data_ingest,created_at,secret"
    lines = api.get("sdk_keys", headers={"Accept": "text/csv"}).text.splitlines()
    assert lines[0] == "id,name,tag_field,enforcement_mode,secure_data_ingest,created_at"
    assert ",k,,false,false," in lines[1]


def test_unknown_methods_are_405(api):
    response = api.request("PUT", "sdk_keys")
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, POST"
    assert api.get("sdk_keys/x/enforcement_mode/enable").headers["allow"] == "POST"


def test_concurrent_creates_never_make_a_sixth_key(db, account):
    from concurrent.futures import ThreadPoolExecutor

    from opencues.errors import ApiError

    def create(index):
        try:
            sdk_keys.create_key(db, account.account_id, {"name": f"k{index}"})
            return "created"
        except ApiError as exc:
            return exc.detail

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(create, range(12)))
    assert outcomes.count("created") == 5, outcomes
    assert set(outcomes) == {"created", "maximum of 5 SDK keys per account"}
    assert len(sdk_keys.list_keys(db, account.account_id)) == 5
