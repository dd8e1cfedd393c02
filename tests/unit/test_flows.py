from datetime import datetime

import pytest

from opencues import flows
from opencues.errors import ApiError
from tests.conftest import AccountClient, assert_problem, make_account

ISO_MS = "%Y-%m-%dT%H:%M:%S.%fZ"


@pytest.fixture
def two_flows(db, account):
    flows.create_flow(db, account.account_id, "Flow 1", flow_id="flow1", frequency="once", published=True)
    flows.create_flow(db, account.account_id, "Flow 2", flow_id="flow2", frequency="every_time")


def test_list_flows_json(api, two_flows):
    response = api.get("flows")
    assert response.status_code == 200
    body = response.json()
    assert [f["id"] for f in body] == ["flow1", "flow2"]
    first = body[0]
    assert list(first) == [*flows.COLUMNS, "url", "tag_ids", "tags"]
    assert first["tag_ids"] == [] and first["tags"] == {}
    assert first["published"] is True and first["frequency"] == "once"
    assert body[1]["published_at"] is None
    assert first["url"] == "http://testserver/v2/accounts/acct1/flows/flow1"
    for field in ("created_at", "updated_at", "published_at"):
        assert first[field].endswith("Z") and len(first[field]) == 24
        datetime.strptime(first[field], ISO_MS)


def test_list_flows_csv(api, two_flows):
    response = api.get("flows", headers={"Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    # The beta's header, then the current API's tag columns.
    assert lines[0] == "id,name,published,frequency,created_at,updated_at,published_at,created_by,updated_by,url,tag_ids,tags"
    assert lines[1].startswith("flow1,Flow 1,true,once,")
    cells = lines[2].split(",")
    assert cells[2] == "false" and cells[6] == ""


def test_get_flow_and_unknown_flow(api, two_flows):
    assert api.get("flows/flow2").json()["name"] == "Flow 2"
    assert assert_problem(api.get("flows/missing"), 404)["detail"] == "flow not found"


@pytest.mark.parametrize("body", [None, b"{}", b""])
def test_publish_accepts_no_body_empty_json_and_empty_form(api, two_flows, body):
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body == b"" else {}
    response = api.post("flows/flow2/publish", content=body, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"status": 200, "title": "OK"}
    flow = api.get("flows/flow2").json()
    assert flow["published"] is True and flow["published_at"] is not None
    assert flow["updated_by"] == api.creds.key


def test_publish_twice_changes_nothing_and_unpublish_keeps_published_at(api, two_flows):
    api.post("flows/flow2/publish")
    first = api.get("flows/flow2").json()
    api.post("flows/flow2/publish")
    assert api.get("flows/flow2").json() == first
    response = api.post("flows/flow2/unpublish", headers={"Accept": "text/csv"})
    assert response.text.splitlines() == ["status,title", "200,OK"]
    after = api.get("flows/flow2").json()
    assert after["published"] is False
    assert after["published_at"] == first["published_at"]
    assert api.post("flows/flow2/unpublish").status_code == 200


def test_publish_unknown_flow_is_404(api):
    assert assert_problem(api.post("flows/nope/publish"), 404)["detail"] == "flow not found"


def test_flows_are_per_account(client, db, api, two_flows):
    other = AccountClient(client, make_account(db, "acct2"))
    assert other.get("flows").json() == []
    assert_problem(other.get("flows/flow1"), 404)


def test_read_only_key_cannot_publish(client, db, account, two_flows):
    reader = AccountClient(client, make_account(db, account.account_id, read_only=True))
    assert reader.get("flows").status_code == 200
    assert_problem(reader.post("flows/flow1/unpublish"), 403, "read-only")


def test_import_flows_from_file(db, account, tmp_path):
    path = tmp_path / "flows.json"
    path.write_text(
        '[{"id": "f1", "name": "One", "published": true, "frequency": "every_time",'
        ' "created_at": "2021-04-05T16:21:09Z", "published_at": "2021-04-05T17:00:42Z"}]'
    )
    [flow] = flows.import_flows(db, account.account_id, path)
    assert flow["created_at"] == "2021-04-05T16:21:09.000Z"
    assert flow["published_at"] == "2021-04-05T17:00:42.000Z"
    assert flow["frequency"] == "every_time" and flow["published"] is True


def test_flows_carry_their_tags_in_json_and_csv(db, api, tmp_path):
    path = tmp_path / "flows.json"
    path.write_text('[{"id": "f1", "name": "One", "tag_ids": ["t1", "t2"]}, {"id": "f2", "name": "Two", "tags": {"t3": true}}]')
    flows.import_flows(db, api.creds.account_id, path)
    one, two = api.get("flows").json()
    assert one["tag_ids"] == ["t1", "t2"] and one["tags"] == {"t1": True, "t2": True}
    assert two["tag_ids"] == ["t3"] and two["tags"] == {"t3": True}
    assert api.get("flows/f1").json()["tags"] == {"t1": True, "t2": True}
    import csv, io

    rows = list(csv.DictReader(io.StringIO(api.get("flows", headers={"Accept": "text/csv"}).text)))
    assert rows[0]["tag_ids"] == '["t1","t2"]' and rows[0]["tags"] == '{"t1":true,"t2":true}'
    assert "tags.t1" not in rows[0]  # one column per top-level field, objects as JSON text


def test_import_flows_names_the_bad_field(db, account, tmp_path):
    path = tmp_path / "flows.json"
    path.write_text('[{"id": "f1", "name": "One", "tag_ids": "t1"}]')
    with pytest.raises(ApiError) as caught:
        flows.import_flows(db, account.account_id, path)
    assert "[0]" in caught.value.detail and "tag_ids" in caught.value.detail
