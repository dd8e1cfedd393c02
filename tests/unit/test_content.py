import json

import pytest

from opencues import cli as cli_module
from opencues import content, experiences, flows, tags
from opencues.errors import ApiError
from tests.conftest import AccountClient, make_account
from tests.unit.test_cli import cli  # noqa: F401 - the fixture


def test_every_resource_is_created_then_replaced_by_id(db, account):
    document = {
        "flows": [{"id": "f1", "name": "Tour", "tag_ids": ["t1"]}],
        "tags": [{"id": "t1", "name": "onboarding"}],
        **{t: [{"id": "e1", "internal_name" if t == "checklists" else "name": "First"}] for t in experiences.TYPES},
    }
    report = content.import_content(db, account.account_id, document)
    assert set(report) == set(content.RESOURCES)
    assert all(r == {"created": 1, "replaced": 0, "failed": 0, "errors": []} for r in report.values()), report
    document["tags"] = [{"id": "t1", "name": "renamed"}]
    document["pins"] = [{"id": "e1", "name": "Second", "published": True}]
    again = content.import_content(db, account.account_id, document)
    assert all(r["replaced"] == 1 and r["created"] == 0 for r in again.values())
    assert tags.get_tag(db, account.account_id, "t1")["name"] == "renamed"
    pin = experiences.get_experience(db, account.account_id, "pins", "e1")
    assert pin["name"] == "Second" and pin["published"] is True and pin["state"] == "PUBLISHED"
    assert experiences.get_experience(db, account.account_id, "banners", "e1")["name"] == "First"
    assert flows.get_flow(db, account.account_id, "f1")["tags"] == {"t1": True}


def test_bad_objects_are_counted_and_reported_without_blocking_good_ones(db, account):
    report = content.import_content(
        db,
        account.account_id,
        {
            "tags": [{"id": "ok1"}, "not an object", {"id": "bad", "name": 5}, {"id": "ok2"}],
            "flows": [{"id": "nameless"}, {"id": "f2", "name": "Fine"}],
            "nps": [{"id": "n1", "steps": "x"}],
        },
    )
    assert report["tags"]["created"] == 2 and report["tags"]["failed"] == 2
    assert [(e["index"], e["id"]) for e in report["tags"]["errors"]] == [(1, None), (2, "bad")]
    assert "`name`" in report["tags"]["errors"][1]["detail"]
    assert report["flows"]["failed"] == 1 and "`name`" in report["flows"]["errors"][0]["detail"]
    assert report["nps"] == {"created": 0, "replaced": 0, "failed": 1,
                             "errors": [{"index": 0, "id": "n1", "detail": "`steps` must be an array or null"}]}  # fmt: skip
    assert [t["id"] for t in tags.list_tags(db, account.account_id)] == ["ok1", "ok2"]
    assert [f["id"] for f in flows.list_flows(db, account.account_id)] == ["f2"]


@pytest.mark.parametrize(
    "document, mentions",
    [([], "JSON object"), ({"pin": []}, "unknown resource 'pin'"), ({"tags": {}}, "`tags` must be an array")],
)
def test_a_malformed_file_is_refused_whole(db, account, document, mentions):
    with pytest.raises(ApiError) as caught:
        content.import_content(db, account.account_id, document)
    assert mentions in caught.value.detail
    assert tags.list_tags(db, account.account_id) == []


def test_import_into_an_unknown_account_fails(db):
    with pytest.raises(ApiError) as caught:
        content.import_content(db, "nobody", {"tags": []})
    assert caught.value.status == 404


def test_cli_content_import(cli, tmp_path, db):  # noqa: F811
    cli("accounts", "create", "--id", "acme")
    path = tmp_path / "content.json"
    path.write_text(json.dumps({"tags": [{"id": "t1", "name": "a"}], "pins": [{"id": "p1", "name": "Pin"}]}))
    output = cli("content", "import", "--account", "acme", str(path)).output
    assert "tags: 1 created, 0 replaced, 0 failed" in output and "pins: 1 created" in output
    report = json.loads(cli("content", "import", "--account", "acme", str(path), "--json").stdout)
    assert report["pins"] == {"created": 0, "replaced": 1, "failed": 0, "errors": []}
    assert experiences.get_experience(db, "acme", "pins", "p1")["name"] == "Pin"


def test_cli_content_import_reports_bad_objects_and_exits_1(cli, tmp_path, db):  # noqa: F811
    cli("accounts", "create", "--id", "acme")
    path = tmp_path / "content.json"
    path.write_text(json.dumps({"tags": [{"id": "t1"}, {"id": "t2", "updated_at": "never"}]}))
    result = cli("content", "import", "--account", "acme", str(path), ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "1 created" in result.output and "[1] t2: `updated_at`" in result.output
    assert [t["id"] for t in tags.list_tags(db, "acme")] == ["t1"]
    path.write_text("{not json")
    broken = cli("content", "import", "--account", "acme", str(path), ok=False)
    assert broken.exit_code == 1 and "cannot read content" in broken.output


def test_flows_import_still_works_beside_content_import(cli, tmp_path, db):  # noqa: F811
    cli("accounts", "create", "--id", "acme")
    path = tmp_path / "flows.json"
    path.write_text('[{"id": "f1", "name": "One"}]')
    assert "imported 1 flows" in cli("flows", "import", "--account", "acme", str(path)).output


def test_demo_account_answers_every_list_with_data(client, db, capsys):
    cli_module._print_demo(db, "127.0.0.1", 8000)
    line = next(l for l in capsys.readouterr().out.splitlines() if l.strip().startswith("curl "))
    key, secret = line.split()[2].split(":", 1)
    api = AccountClient(client, make_account(db, "demo"))
    for resource in ("flows", "tags", *experiences.TYPES):
        listed = api.get(resource)
        assert listed.status_code == 200 and listed.json(), resource
    assert client.get("/v2/accounts/demo/tags", auth=(key, secret)).status_code == 200
    api.post("pins/demo-pins/publish")
    cli_module._print_demo(db, "127.0.0.1", 8000)  # a second start keeps the data as it is
    assert len(api.get("tags").json()) == 2
    assert api.get("pins/demo-pins").json()["published"] is True


def test_a_demo_account_from_before_content_gets_it_at_the_next_start(client, db, capsys):
    from opencues import accounts

    accounts.create_account(db, "demo", "Demo account")  # as an older `serve --demo` left it
    cli_module._print_demo(db, "127.0.0.1", 8000)
    api = AccountClient(client, make_account(db, "demo"))
    assert api.get("tags").json() and api.get("flows-v2").json()


def test_values_postgresql_cannot_hold_fail_alike_on_both_databases(db, account):
    report = content.import_content(
        db,
        account.account_id,
        {
            "tags": [{"id": "x" * 129}, {"id": "ok", "name": "a\x00b"}, {"id": "ok2", "created_by": "u" * 200}],
            "pins": [{"id": "p1", "steps": [{"content": {"k\x00": 1}}]}, {"id": "p2", "state": "S" * 40}, {"id": "p3"}],
        },
    )
    details = [e["detail"] for e in report["tags"]["errors"]]
    assert report["tags"]["failed"] == 3 and report["tags"]["created"] == 0
    assert "`id` is longer than 128" in details[0] and "`name` must not contain NUL" in details[1]
    assert "`created_by` is longer than 128" in details[2]
    assert report["pins"]["created"] == 1 and report["pins"]["failed"] == 2
    assert "steps[0].content" in report["pins"]["errors"][0]["detail"] and "`state`" in report["pins"]["errors"][1]["detail"]


def test_a_row_the_database_refuses_is_reported_and_the_rest_still_land(db, account, monkeypatch):
    from sqlalchemy import text

    real_replace = tags.replace

    def replace(conn, account_id, row):
        if row["id"] == "refused":
            conn.execute(text("SELECT * FROM no_such_table"))  # a real database error, mid-transaction
        return real_replace(conn, account_id, row)

    monkeypatch.setattr(tags, "replace", replace)
    report = content.import_content(db, account.account_id, {"tags": [{"id": "a"}, {"id": "refused"}, {"id": "b"}]})
    assert (report["tags"]["created"], report["tags"]["failed"]) == (2, 1)
    assert report["tags"]["errors"][0]["id"] == "refused" and "database refused" in report["tags"]["errors"][0]["detail"]
    assert [t["id"] for t in tags.list_tags(db, account.account_id)] == ["a", "b"]
