"""An existing data dir at revision 0002 upgrades in place to 0003 and keeps its data."""

from __future__ import annotations

from sqlalchemy import text

from opencues import accounts, content, flows, tags
from opencues.storage.migrations import upgrade
from tests.unit.storage.test_migrations import empty_db  # noqa: F401 - the fixture


def test_upgrade_from_0002_keeps_flows_and_adds_content(empty_db):  # noqa: F811
    upgrade(empty_db, "0002")
    with empty_db.engine.begin() as conn:
        conn.execute(text("INSERT INTO accounts (id, name, created_at) VALUES ('a1', 'Acme', 1)"))
        conn.execute(
            text(
                "INSERT INTO flows (account_id, id, name, published, frequency, created_at, updated_at,"
                " published_at, created_by, updated_by)"
                " VALUES ('a1', 'f1', 'Tour', true, 'once', 1626451370037, 1626451370037, 1626451370037, 'u', 'u')"
            )
        )
        assert {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))} == {"0002"}
    upgrade(empty_db)
    [flow] = flows.list_flows(empty_db, "a1")
    assert flow["name"] == "Tour" and flow["published"] is True
    assert flow["created_at"] == "2021-07-16T16:02:50.037Z"
    assert flow["tag_ids"] == [] and flow["tags"] == {}
    assert accounts.get_account(empty_db, "a1")["name"] == "Acme"
    report = content.import_content(empty_db, "a1", {"tags": [{"id": "t1"}], "flows": [{"id": "f1", "name": "Tour", "tag_ids": ["t1"]}]})
    assert report["flows"]["replaced"] == 1
    assert flows.get_flow(empty_db, "a1", "f1")["tags"] == {"t1": True}
    assert [t["id"] for t in tags.list_tags(empty_db, "a1")] == ["t1"]
