import io
import zipfile

import pytest

from opencues import content, flows, screenshots
from tests.conftest import AccountClient, assert_problem, make_account


@pytest.fixture
def some_content(db, account):
    flows.create_flow(db, account.account_id, "Tour", flow_id="flow1")
    content.import_content(db, account.account_id, {"pins": [{"id": "pin1"}], "checklists": [{"id": "c1"}]})


@pytest.mark.parametrize("resource_id", ["flow1", "pin1", "c1"])
def test_known_content_gets_a_valid_zip(api, some_content, resource_id):
    response = api.get(f"screenshots/{resource_id}", headers={"Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert f'filename="{resource_id}-screenshots.zip"' in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None and archive.namelist() == []


def test_unknown_ids_and_other_accounts_get_content_not_found(client, db, api, some_content):
    assert assert_problem(api.get("screenshots/nope"), 404)["detail"] == "content not found"
    other = AccountClient(client, make_account(db, "acct2"))
    assert assert_problem(other.get("screenshots/flow1"), 404)["detail"] == "content not found"
    assert_problem(client.get("/v2/accounts/acct1/screenshots/flow1"), 401)


def test_archive_holds_the_entries_it_is_given():
    data = screenshots.archive([("0-s1.png", b"\x89PNG one"), ("1-s2.png", b"\x89PNG two")])
    assert data.startswith(b"PK\x03\x04")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["0-s1.png", "1-s2.png"]
        assert archive.read("1-s2.png") == b"\x89PNG two"
