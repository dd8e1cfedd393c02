"""Loading content (flows, tags and the eight experience types) into an account.

The API only reads and publishes content; operators load it from a JSON document whose keys are
the API's resource names and whose values are arrays of objects in that resource's own API shape
(``{"tags": [...], "pins": [...], "flows-v2": [...]}``), as ``opencues content import`` does.
Each object is created, or replaces the object of that resource with the same ``id``. A bad
object is counted and reported with the field at fault and never stops the good ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from sqlalchemy.exc import DBAPIError

from opencues import experiences, flows, tags, timestamps
from opencues.accounts import get_account
from opencues.errors import ApiError, bad_request
from opencues.storage import Database

RESOURCES = ("flows", "tags", *experiences.TYPES)


def _loader(resource: str) -> tuple[Callable, Callable]:
    """(object → row, write row) for one resource."""
    if resource == "flows":
        return flows.row_from_object, flows.replace
    if resource == "tags":
        return tags.row_from_object, tags.replace
    return (
        lambda account_id, item, now: experiences.row_from_object(account_id, resource, item, now),
        experiences.replace,
    )


def import_content(db: Database, account_id: str, document: object) -> dict:
    """Load ``document``; per resource present, how many objects were created, replaced and
    failed, and for each failure its index, id and reason."""
    if not isinstance(document, dict):
        raise bad_request("a content file must hold a JSON object keyed by resource name (flows, tags, pins, …)")
    unknown = [key for key in document if key not in RESOURCES]
    if unknown:
        raise bad_request(f"unknown resource {unknown[0]!r}; content files may hold {', '.join(RESOURCES)}")
    for resource, items in document.items():
        if not isinstance(items, list):
            raise bad_request(f"`{resource}` must be an array of {resource} objects")
    get_account(db, account_id)
    now = timestamps.now_ms()
    report = {}
    for resource, items in document.items():
        to_row, write = _loader(resource)
        outcome = {"created": 0, "replaced": 0, "failed": 0, "errors": []}
        rows = []
        for index, item in enumerate(items):
            try:
                _refuse_nul(item)
                rows.append((index, item, to_row(account_id, item, now)))
            except ApiError as exc:
                _failed(outcome, index, item, exc.detail)
        with db.begin() as conn:
            for index, item, row in rows:
                try:
                    with conn.begin_nested():  # a row the database refuses is reported, not fatal
                        outcome["replaced" if write(conn, account_id, row) else "created"] += 1
                except DBAPIError as exc:
                    _failed(outcome, index, item, f"the database refused it: {exc.orig}")
        report[resource] = outcome
    return report


def _refuse_nul(value, where: str = "") -> None:
    """400 naming the first field holding a NUL character, which PostgreSQL cannot store (so a
    file loads the same on both databases)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise bad_request(f"`{where or 'value'}` must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                raise bad_request(f"field names must not contain NUL characters (in `{where or 'object'}`)")
            _refuse_nul(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_nul(item, f"{where}[{index}]")


def _failed(outcome: dict, index: int, item: object, detail: str) -> None:
    outcome["failed"] += 1
    item_id = item.get("id") if isinstance(item, dict) else None
    outcome["errors"].append({"index": index, "id": item_id, "detail": detail})


def import_file(db: Database, account_id: str, path: str | Path) -> dict:
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise bad_request(f"cannot read content from {path}: {exc}") from None
    return import_content(db, account_id, document)


def demo_content() -> dict:
    """Two tags and one object of every experience type, for ``opencues serve --demo``."""
    tag_ids = ["tag-onboarding", "tag-announcements"]
    steps = [
        {
            "id": "step-1", "type": "modal", "index": 0, "contentType": "modal",
            "content": {"type": "stack", "nodeId": "node-1", "props": {"children": []}},
            "children": [], "rows": [], "actions": {}, "traits": [{"type": "@appcues/overlay", "config": {}}],
        }
    ]  # fmt: skip

    def experience(resource: str, name: str, published: bool = False, **extra) -> dict:
        return {"id": f"demo-{resource}", "name": name, "published": published, "frequency": "once",
                "steps": steps, "traits": [], "tag_ids": tag_ids[:1], **extra}  # fmt: skip

    return {
        "tags": [{"id": tag_ids[0], "name": "onboarding"}, {"id": tag_ids[1], "name": "announcements"}],
        "checklists": [
            {
                "id": "demo-checklists", "internal_name": "Getting started", "title": "Get started",
                "published": True, "is_dismissable": True, "is_sequential": False,
                "items": {
                    "item-1": {"id": "item-1", "index": 0, "label": "Take the tour", "depends_on": [],
                               "action": [], "actions": [{"attributes": {"action_type": "show_flow",
                                                                        "params": {"flow_id": "flow1"}}}],
                               "conditions": {"and": []}},
                },
                "text_tokens": {"header_text": "Getting started"},
            }
        ],
        "pins": [experience("pins", "New reports hotspot", theme="default")],
        "banners": [experience("banners", "Maintenance window", published=True, theme="default")],
        "launchpads": [experience("launchpads", "What's new")],
        "mobile": [experience("mobile", "Mobile welcome", platform="ios")],
        "embeds": [experience("embeds", "Dashboard tips")],
        "nps": [experience("nps", "Quarterly NPS", published=True)],
        "flows-v2": [experience("flows-v2", "Welcome tour 2.0")],
    }
