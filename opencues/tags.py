"""Tags: labels on flows and experiences. The API only reads them; operators load them with
``opencues content import`` (``opencues.content``).

Tags render their times as ISO strings with milliseconds, like flows and segments (only the
experience types use epoch-millisecond numbers). Content refers to tags by id in ``tag_ids``;
``tags`` is the same set as an object (tag id → ``true``), the shape the vendor sends.
"""

from __future__ import annotations

from sqlalchemy import func, select

from opencues import ids, timestamps
from opencues.errors import ApiError, bad_request
from opencues.storage import Database
from opencues.storage.schema import tags

COLUMNS = ("id", "name", "created_at", "updated_at", "created_by", "updated_by")
# The widths of the id and author columns of flows, tags and experiences (checked on both
# databases alike: PostgreSQL refuses a longer value, SQLite would keep it).
MAX_ID_LENGTH = 128
MAX_AUTHOR_LENGTH = 128
NOT_FOUND = "tag not found"


def _as_dict(row) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "created_at": timestamps.render(row.created_at),
        "updated_at": timestamps.render(row.updated_at),
        "created_by": row.created_by,
        "updated_by": row.updated_by,
    }


def list_tags(db: Database, account_id: str) -> list[dict]:
    with db.connect() as conn:
        rows = conn.execute(
            select(tags)
            .where(tags.c.account_id == account_id)
            .order_by(func.coalesce(tags.c.created_at, tags.c.updated_at), tags.c.id)
        ).all()
    return [_as_dict(r) for r in rows]


def get_tag(db: Database, account_id: str, tag_id: str) -> dict:
    with db.connect() as conn:
        row = conn.execute(select(tags).where(tags.c.account_id == account_id, tags.c.id == tag_id)).first()
    if row is None:
        raise ApiError(404, NOT_FOUND)
    return _as_dict(row)


def row_from_object(account_id: str, item: object, now: int) -> dict:
    """A ``tags`` row from a tag object in the API's shape (times as ISO strings or epoch ms)."""
    if not isinstance(item, dict):
        raise bad_request("each tag must be a JSON object")
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise bad_request("`name` must be a string or null")
    created = optional_time(item, "created_at")
    return {
        "account_id": account_id,
        "id": object_id(item),
        "name": name,
        "created_at": created if created is not None else now,
        "updated_at": optional_time(item, "updated_at") or created or now,
        "created_by": optional_text(item, "created_by", MAX_AUTHOR_LENGTH),
        "updated_by": optional_text(item, "updated_by", MAX_AUTHOR_LENGTH),
    }


def replace(conn, account_id: str, row: dict) -> bool:
    """Write one tag row, replacing any with its id; True when it replaced one."""
    where = (tags.c.account_id == account_id, tags.c.id == row["id"])
    existed = conn.execute(tags.delete().where(*where)).rowcount > 0
    conn.execute(tags.insert().values(**row))
    return existed


# --- field readers shared by every kind of content object (flows, tags, experiences) ---


def object_id(item: dict) -> str:
    """The object's ``id`` (a string or a number), or a new UUID when it has none."""
    value = item.get("id")
    if value is None:
        return ids.job_id()
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise bad_request("`id` must be a non-empty string")
    if len(str(value)) > MAX_ID_LENGTH:
        raise bad_request(f"`id` is longer than {MAX_ID_LENGTH} characters")
    return str(value)


def optional_text(item: dict, field: str, max_length: int | None = None) -> str | None:
    value = item.get(field)
    if value is not None and not isinstance(value, str):
        raise bad_request(f"`{field}` must be a string or null")
    if value is not None and max_length is not None and len(value) > max_length:
        raise bad_request(f"`{field}` is longer than {max_length} characters")
    return value


def optional_time(item: dict, field: str) -> int | None:
    """An instant given as epoch milliseconds or an ISO 8601 string; None when absent or null."""
    value = item.get(field)
    return None if value is None else timestamps.parse_time(value, field=field)


def tag_ids_of(item: dict) -> list[str]:
    """The object's tag ids: ``tag_ids`` (an array of strings), else the keys of ``tags``."""
    value = item.get("tag_ids")
    if value is None and isinstance(item.get("tags"), dict):
        value = [key for key, on in item["tags"].items() if on]
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request("`tag_ids` must be an array of strings")
    return list(dict.fromkeys(value))


def as_map(tag_ids: list[str] | None) -> dict[str, bool]:
    """``["t1", "t2"]`` → ``{"t1": true, "t2": true}``, the API's ``tags`` field."""
    return {tag_id: True for tag_id in tag_ids or ()}
