"""Flows: read, publish and unpublish through the API; created and imported by operators (CLI).

Publishing sets ``published`` and stamps ``published_at``; publishing a published flow changes
nothing. Unpublishing keeps ``published_at``: it stays the date of the last publish.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select, update

from opencues import ids, timestamps
from opencues.errors import ApiError, bad_request, not_found
from opencues.storage import Database
from opencues.storage.schema import flows

FREQUENCIES = ("once", "every_time")
COLUMNS = (
    "id", "name", "published", "frequency", "created_at", "updated_at",
    "published_at", "created_by", "updated_by",
)  # fmt: skip
CLI_AUTHOR = "opencues-cli"


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
        raise not_found(f"flow {flow_id!r}")
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
                raise not_found(f"flow {flow_id!r}")


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
        where = f"[{index}]"
        if not isinstance(item, dict):
            raise bad_request(f"{where}: each flow must be a JSON object")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad_request(f"{where}.name: required non-empty string")
        frequency = item.get("frequency", "once")
        if frequency not in FREQUENCIES:
            raise bad_request(f"{where}.frequency: must be one of {', '.join(FREQUENCIES)}")
        published = item.get("published", False)
        if not isinstance(published, bool):
            raise bad_request(f"{where}.published: must be true or false")

        def instant(field: str, default):
            value = item.get(field)
            return default if value is None else timestamps.parse_iso(value, field=f"{where}.{field}")

        created = instant("created_at", now)
        rows.append(
            dict(
                account_id=account_id, id=str(item.get("id") or ids.job_id()), name=name,
                published=published, frequency=frequency, created_at=created,
                updated_at=instant("updated_at", created),
                published_at=instant("published_at", created if published else None),
                created_by=item.get("created_by") or CLI_AUTHOR, updated_by=item.get("updated_by") or CLI_AUTHOR,
            )  # fmt: skip
        )
    with db.begin() as conn:
        for row in rows:
            conn.execute(flows.delete().where(flows.c.account_id == account_id, flows.c.id == row["id"]))
        if rows:
            conn.execute(flows.insert(), rows)
    return [get_flow(db, account_id, r["id"]) for r in rows]
