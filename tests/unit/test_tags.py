import csv
import io

import pytest

from opencues import content, tags
from opencues.errors import ApiError
from tests.conftest import AccountClient, assert_problem, make_account

TAGS = [
    {"id": "t2", "name": "onboarding", "created_at": "2021-07-16T16:02:50.037Z", "updated_at": "2021-07-17T00:00:00Z",
     "created_by": "user-1", "updated_by": "user-2"},
    {"id": "t1", "name": None, "created_at": 1626451370000, "updated_at": 1626451370000},
]  # fmt: skip


@pytest.fixture
def two_tags(db, account):
    report = content.import_content(db, account.account_id, {"tags": TAGS})
    assert report["tags"]["created"] == 2


def test_list_tags_in_creation_order_with_iso_times_and_urls(api, two_tags):
    response = api.get("tags")
    assert response.status_code == 200
    listed = response.json()
    assert [t["id"] for t in listed] == ["t1", "t2"]
    assert list(listed[1]) == [*tags.COLUMNS, "url"]
    assert listed[1] == {
        "id": "t2", "name": "onboarding", "created_at": "2021-07-16T16:02:50.037Z",
        "updated_at": "2021-07-17T00:00:00.000Z", "created_by": "user-1", "updated_by": "user-2",
        "url": "http://testserver/v2/accounts/acct1/tags/t2",
    }  # fmt: skip
    assert listed[0]["name"] is None and listed[0]["created_at"] == "2021-07-16T16:02:50.000Z"


def test_get_tag_and_the_vendors_404_detail(api, two_tags):
    assert api.get("tags/t2").json()["name"] == "onboarding"
    assert assert_problem(api.get("tags/nope"), 404)["detail"] == "tag not found"


def test_tags_as_csv(api, two_tags):
    response = api.get("tags", headers={"Accept": "text/csv"})
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert lines[0] == "id,name,created_at,updated_at,created_by,updated_by,url"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows[1]["name"] == "onboarding" and rows[0]["name"] == ""
    one = api.get("tags/t1", headers={"Accept": "text/csv"}).text.splitlines()
    assert one[0] == lines[0] and one[1].startswith("t1,,2021-07-16T16:02:50.000Z")


def test_tags_are_per_account(client, db, api, two_tags):
    other = AccountClient(client, make_account(db, "acct2"))
    assert other.get("tags").json() == []
    assert_problem(other.get("tags/t1"), 404)
    assert_problem(other.client.get("/v2/accounts/acct1/tags", auth=other.creds.auth), 403)


def test_tags_have_no_write_methods(api, two_tags):
    response = api.post("tags", json={"name": "x"})
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET"
    assert api.delete("tags/t1").headers["allow"] == "GET"


def test_a_tag_object_is_checked_field_by_field(account):
    for item, field in (({"id": "x", "name": 3}, "name"), ({"id": "x", "updated_at": "yesterday"}, "updated_at"),
                        ({"id": ["x"]}, "id"), ({"id": "x", "created_by": 1}, "created_by")):  # fmt: skip
        with pytest.raises(ApiError) as caught:
            tags.row_from_object(account.account_id, item, 0)
        assert field in caught.value.detail
