"""Flows: read, publish and unpublish through the API; created and imported by operators (CLI).

Publishing sets ``published`` and stamps ``published_at``; publishing a published flow changes
nothing. Unpublishing keeps ``published_at``: it stays the date of the last publish.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select, update

from opencues import ids, tags, timestamps
from opencues.errors import ApiError, bad_request
from opencues.storage import Database
from opencues.storage.schema import flows

FREQUENCIES = ("once", "every_time")
COLUMNS = (
    "id", "name", "published", "frequency", "created_at", "updated_at",
    "published_at", "created_by", "updated_by",
)  # fmt: skip
# Not in the beta's flow object: added by the current API (a flow's tags), after the beta's fields.
TAG_COLUMNS = ("tag_ids", "tags")
CLI_AUTHOR = "opencues-cli"
NOT_FOUND = "flow not found"  # the vendor's wording (spec §0)


def _as_dict(row) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "published": bool(row.published),
        "frequency": row.frequency,
        "created_at": timestamps.render(row.created_at),
        "updated_at": timestamps.render(row.updated_at),
        "published_at": timestamps.render(row.published_at),
        "created_by": row.created_by,
        "updated_by": row.updated_by,
        "tag_ids": row.tag_ids or [],
        "tags": tags.as_map(row.tag_ids),
    }


def list_flows(db: Database, account_id: str) -> list[dict]:
    with db.connect() as conn:
        rows = conn.execute(
            select(flows).where(flows.c.account_id == account_id).order_by(flows.c.created_at, flows.c.id)
        ).all()
    return [_as_dict(r) for r in rows]


def get_flow(db: Database, account_id: str, flow_id: str) -> dict:
    with db.connect() as conn:
        row = conn.execute(select(flows).where(flows.c.account_id == account_id, flows.c.id == flow_id)).first()
    if row is None:
        raise ApiError(404, NOT_FOUND)
    return _as_dict(row)


def create_flow(
    db: Database,
    account_id: str,
    name: str,
    *,
    flow_id: str | None = None,
    frequency: str = "once",
    published: bool = False,
    created_by: str = CLI_AUTHOR,
) -> dict:
    if not isinstance(name, str) or not name.strip():
        raise bad_request("`name` is required and must be a non-empty string")
    if frequency not in FREQUENCIES:
        raise bad_request(f"`frequency` must be one of {', '.join(FREQUENCIES)}")
    flow_id = flow_id or ids.job_id()
    now = timestamps.now_ms()
    with db.begin() as conn:
        exists = conn.execute(
            select(flows.c.id).where(flows.c.account_id == account_id, flows.c.id == flow_id)
        ).first()
        if exists:
            raise ApiError(409, f"flow {flow_id!r} already exists")
        conn.execute(
            flows.insert().values(
                account_id=account_id, id=flow_id, name=name, published=published, frequency=frequency,
                created_at=now, updated_at=now, published_at=now if published else None,
                created_by=created_by, updated_by=created_by,
            )  # fmt: skip
        )
    return get_flow(db, account_id, flow_id)


def set_published(db: Database, account_id: str, flow_id: str, published: bool, by: str) -> None:
    """Publish or unpublish; a no-op (no timestamps touched) when already in that state."""
    now = timestamps.now_ms()
    values = {"published": published, "updated_at": now, "updated_by": by}
    if published:
        values["published_at"] = now
    with db.begin() as conn:
        result = conn.execute(
            update(flows)
            .where(flows.c.account_id == account_id, flows.c.id == flow_id, flows.c.published == (not published))
            .values(**values)
        )
        if result.rowcount == 0:
            found = conn.execute(
                select(flows.c.id).where(flows.c.account_id == account_id, flows.c.id == flow_id)
            ).first()
            if found is None:
                raise ApiError(404, NOT_FOUND)


def import_flows(db: Database, account_id: str, path: Path) -> list[dict]:
    """Create flows from a JSON array in the API's flow shape (``id``, ``name``, ``frequency``,
    ``published``, optional times); existing ids are replaced."""
    try:
        items = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise bad_request(f"cannot read flows from {path}: {exc}") from None
    if not isinstance(items, list):
        raise bad_request("a flows file must hold a JSON array of flow objects")
    rows = []
    now = timestamps.now_ms()
    for index, item in enumerate(items):
        try:
            rows.append(row_from_object(account_id, item, now))
        except ApiError as exc:
            raise bad_request(f"[{index}]: {exc.detail}") from None
    with db.begin() as conn:
        for row in rows:
            conn.execute(flows.delete().where(flows.c.account_id == account_id, flows.c.id == row["id"]))
        if rows:
            conn.execute(flows.insert(), rows)
    return [get_flow(db, account_id, r["id"]) for r in rows]


def row_from_object(account_id: str, item: object, now: int) -> dict:
    """A ``flows`` row from a flow object in the API's shape (``id``, ``name``, ``frequency``,
    ``published``, times as ISO strings or epoch ms, ``tag_ids``/``tags``); 400 naming the field."""
    if not isinstance(item, dict):
        raise bad_request("each flow must be a JSON object")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("`name`: required non-empty string")
    frequency = item.get("frequency", "once")
    if frequency not in FREQUENCIES:
        raise bad_request(f"`frequency`: must be one of {', '.join(FREQUENCIES)}")
    published = item.get("published", False)
    if not isinstance(published, bool):
        raise bad_request("`published`: must be true or false")
    created = tags.optional_time(item, "created_at")
    created = now if created is None else created
    published_at = tags.optional_time(item, "published_at")
    return dict(
        account_id=account_id, id=tags.object_id(item), name=name, published=published, frequency=frequency,
        created_at=created, updated_at=tags.optional_time(item, "updated_at") or created,
        published_at=published_at if published_at is not None else (created if published else None),
        created_by=tags.optional_text(item, "created_by", tags.MAX_AUTHOR_LENGTH) or CLI_AUTHOR,
        updated_by=tags.optional_text(item, "updated_by", tags.MAX_AUTHOR_LENGTH) or CLI_AUTHOR,
        tag_ids=tags.tag_ids_of(item),
    )  # fmt: skip


def replace(conn, account_id: str, row: dict) -> bool:
    """Write one flow row, replacing any flow with its id; True when it replaced one."""
    where = (flows.c.account_id == account_id, flows.c.id == row["id"])
    existed = conn.execute(flows.delete().where(*where)).rowcount > 0
    conn.execute(flows.insert().values(**row))
    return existed
