import csv
import io
import json

import pytest

from opencues import content, experiences
from opencues.errors import ApiError
from tests.conftest import AccountClient, assert_problem, make_account

TYPES = experiences.TYPES
UNTHEMED = ("launchpads", "mobile", "embeds", "nps", "flows-v2")
STEP = {"id": "s1", "type": "modal", "index": 0, "contentType": "modal", "content": {"type": "stack", "nodeId": "n1"},
        "children": [], "rows": [], "actions": {"dismiss-button": [{"on": "click", "type": "@appcues/close", "config": {}}]},
        "traits": [{"type": "@appcues/overlay", "config": {}}], "createdAt": 1721049600123, "updatedAt": 1721049600123}  # fmt: skip


def _object(resource: str, ident: str = "e1", **extra) -> dict:
    if resource == "checklists":
        return {"id": ident, "internal_name": "Getting started", "title": "Get started", "published": False,
                "items": {"i1": {"id": "i1", "index": 0, "label": "Tour", "depends_on": []}},
                "styles": {"beacon_horizontal_offset": 5}, "created_at": 1721049600123, **extra}  # fmt: skip
    return {"id": ident, "name": f"A {resource}", "published": False, "steps": [STEP],
            "traits": [{"type": "banner", "config": {"strategy": "push"}}], "tag_ids": ["t1"],
            "created_at": 1721049600123, "updated_at": "2024-07-15T13:20:00.123Z", "account_id": "ignored",
            "theme": "th1", "preview_url": "https://preview.example/x", **extra}  # fmt: skip


@pytest.fixture
def loaded(db, account):
    report = content.import_content(db, account.account_id, {t: [_object(t), _object(t, "e0", created_at=1)] for t in TYPES})
    assert all(report[t]["created"] == 2 and report[t]["failed"] == 0 for t in TYPES), report


@pytest.mark.parametrize("resource", [t for t in TYPES if t != "checklists"])
def test_list_and_get_an_experience_type(api, loaded, resource):
    listed = api.get(resource).json()
    assert [e["id"] for e in listed] == ["e0", "e1"]
    item = api.get(f"{resource}/e1").json()
    assert item == listed[1]
    expected = [f for f in experiences.columns(resource)]
    assert list(item) == expected
    assert ("theme" in item) == (resource in ("pins", "banners"))
    assert item["account_id"] == "acct1"  # the owning account, whatever the loaded object said
    assert item["created_at"] == 1721049600123 and item["updated_at"] == 1721049600123
    assert item["published"] is False and item["state"] == "DRAFT"
    assert item["steps"] == [STEP] and item["traits"][0]["config"] == {"strategy": "push"}
    assert item["tag_ids"] == ["t1"] and item["tags"] == {"t1": True}
    assert item["type"] == experiences.KINDS[resource].default_type
    assert item["url"] == f"http://testserver/v2/accounts/acct1/{resource}/e1"


def test_checklists_have_their_own_shape(api, loaded):
    item = api.get("checklists/e1").json()
    assert list(item) == list(experiences.columns("checklists"))
    assert "name" not in item and item["internal_name"] == "Getting started"
    assert item["checklist_id"] == "e1" and item["published"] is False
    assert item["items"]["i1"]["label"] == "Tour" and item["styles"]["beacon_horizontal_offset"] == 5
    assert item["created_at"] == 1721049600123 and isinstance(item["updated_at"], int)


@pytest.mark.parametrize("resource", TYPES)
def test_unknown_ids_get_the_vendors_404_detail(api, loaded, resource):
    detail = "checklist not found" if resource == "checklists" else "experience not found"
    for method, path in (("GET", "nope"), ("POST", "nope/publish"), ("POST", "nope/unpublish")):
        assert assert_problem(api.request(method, f"{resource}/{path}"), 404)["detail"] == detail


@pytest.mark.parametrize("resource", TYPES)
def test_publish_and_unpublish_are_idempotent_and_stamp_the_change(api, loaded, resource):
    before = api.get(f"{resource}/e1").json()
    response = api.post(f"{resource}/e1/publish")
    assert response.status_code == 200 and response.json() == {"status": 200, "title": "OK"}
    published = api.get(f"{resource}/e1").json()
    assert published["published"] is True and published["state"] == "PUBLISHED"
    assert published["updated_by"] == api.creds.key and published["updated_at"] > before["updated_at"]
    assert api.post(f"{resource}/e1/publish", json={}).status_code == 200
    assert api.get(f"{resource}/e1").json() == published  # publishing again changes nothing
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert api.post(f"{resource}/e1/unpublish", content=b"", headers=form).status_code == 200
    after = api.get(f"{resource}/e1").json()
    assert after["published"] is False and after["state"] == "DRAFT"
    assert api.get(f"{resource}/e0").json()["published"] is False  # only that one


@pytest.mark.parametrize("resource", TYPES)
def test_every_read_answers_csv_with_one_column_per_field(api, loaded, resource):
    response = api.get(resource, headers={"Accept": "text/csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == list(experiences.columns(resource))
    assert [r["id"] for r in rows] == ["e0", "e1"]
    nested = "items" if resource == "checklists" else "steps"
    assert json.loads(rows[1][nested]) == api.get(f"{resource}/e1").json()[nested]
    one = api.get(f"{resource}/e1", headers={"Accept": "text/csv"}).text
    assert list(csv.DictReader(io.StringIO(one))) == rows[1:]
    assert api.post(f"{resource}/e1/publish", headers={"Accept": "text/csv"}).text.splitlines() == ["status,title", "200,OK"]


@pytest.mark.parametrize("resource", TYPES)
def test_types_and_accounts_are_kept_apart(client, db, api, loaded, resource):
    other_type = "pins" if resource != "pins" else "banners"
    content.import_content(db, "acct1", {other_type: [_object(other_type, "only-there")]})
    assert_problem(api.get(f"{resource}/only-there"), 404)
    other = AccountClient(client, make_account(db, "acct2"))
    assert other.get(resource).json() == []
    assert_problem(other.get(f"{resource}/e1"), 404)
    assert_problem(other.post(f"{resource}/e1/publish"), 404)
    assert_problem(client.get(f"/v2/accounts/acct1/{resource}", auth=other.creds.auth), 403)


@pytest.mark.parametrize("resource", TYPES)
def test_read_only_keys_read_but_never_publish(client, db, loaded, resource):
    reader = AccountClient(client, make_account(db, "acct1", read_only=True))
    assert reader.get(resource).status_code == 200
    assert_problem(reader.post(f"{resource}/e1/publish"), 403, "read-only")
    assert_problem(reader.post(f"{resource}/e1/unpublish"), 403, "read-only")


@pytest.mark.parametrize("resource", TYPES)
def test_unknown_methods_are_405_with_allow(api, loaded, resource):
    listing = api.post(resource, json={})
    assert_problem(listing, 405)
    assert listing.headers["allow"] == "GET"
    one = api.delete(f"{resource}/e1")
    assert_problem(one, 405)
    assert one.headers["allow"] == "GET"
    assert api.get(f"{resource}/e1/publish").headers["allow"] == "POST"


def test_published_and_state_follow_each_other_when_loaded(account):
    row = experiences.row_from_object("a", "pins", {"id": "x", "state": "PUBLISHED"}, 5)
    assert (row["published"], row["state"], row["created_at"], row["updated_at"]) == (True, "PUBLISHED", 5, 5)
    row = experiences.row_from_object("a", "mobile", {"id": "x", "published": True, "platform": "android"}, 5)
    assert (row["published"], row["state"], row["document"]["platform"]) == (True, "PUBLISHED", "android")
    assert experiences.row_from_object("a", "mobile", {"id": "x"}, 5)["document"]["platform"] is None
    assert experiences.row_from_object("a", "embeds", {"id": "x"}, 5)["document"]["platform"] == "web"


@pytest.mark.parametrize(
    "item, field",
    [
        ({"steps": {"not": "a list"}}, "steps"),
        ({"traits": [{"type": "x"}, "loose"]}, "traits[1]"),
        ({"published": "yes"}, "published"),
        ({"name": 7}, "name"),
        ({"frequency": "daily"}, "frequency"),
        ({"created_at": "soon"}, "created_at"),
        ({"tag_ids": [1]}, "tag_ids"),
    ],
)
def test_a_bad_field_is_named(item, field):
    with pytest.raises(ApiError) as caught:
        experiences.row_from_object("a", "banners", {"id": "x", **item}, 0)
    assert caught.value.status == 400 and f"`{field}`" in caught.value.detail


def test_checklist_fields_are_checked_too():
    with pytest.raises(ApiError) as caught:
        experiences.row_from_object("a", "checklists", {"id": "x", "items": []}, 0)
    assert "`items`" in caught.value.detail


def test_lists_ignore_paging_parameters(api, loaded):
    # Lists are bare arrays without pagination; clients that send page/limit get everything.
    assert [e["id"] for e in api.get("pins", params={"page": 2, "limit": 1}).json()] == ["e0", "e1"]
