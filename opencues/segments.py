"""User segments: named lists of users, created, renamed and deleted through the API.

Only ``name`` and ``description`` are writable. Membership rows (``segment_members``) are written
by the bulk add/remove endpoints; deleting a segment deletes them in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import select, update

from opencues import ids, timestamps
from opencues.errors import bad_request, not_found
from opencues.storage import Database
from opencues.storage.schema import segment_members, segments

# The order of the spec's JSON examples (alphabetical) and of its CSV header, without `url`.
JSON_FIELDS = ("created_at", "created_by", "description", "id", "name", "updated_at", "updated_by")
COLUMNS = ("id", "name", "description", "created_at", "created_by", "updated_at", "updated_by")
WRITABLE = ("name", "description")


def _as_dict(row) -> dict:
    return {
        "created_at": timestamps.render(row.created_at),
        "created_by": row.created_by,
        "description": row.description,
        "id": row.id,
        "name": row.name,
        "updated_at": timestamps.render(row.updated_at),
        "updated_by": row.updated_by,
    }


def _check_fields(body: dict, *, creating: bool) -> dict:
    """The writable fields of a create/update body, validated; anything else is a 400."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object with `name` and/or `description`")
    for key in body:
        if key not in WRITABLE:
            raise bad_request(f"`{key}` is not a writable segment field; only `name` and `description` are")
    if "name" in body or creating:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad_request("`name` is required and must be a non-empty string")
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise bad_request("`description` must be a string or null")
    return {k: body[k] for k in WRITABLE if k in body}


def list_segments(db: Database, account_id: str) -> list[dict]:
    with db.connect() as conn:
        rows = conn.execute(
            select(segments)
            .where(segments.c.account_id == account_id)
            .order_by(segments.c.created_at, segments.c.id)
        ).all()
    return [_as_dict(r) for r in rows]


def get_segment(db: Database, account_id: str, segment_id: str) -> dict:
    """The segment, or 404 — also the existence check of the membership endpoints."""
    with db.connect() as conn:
        row = conn.execute(
            select(segments).where(segments.c.account_id == account_id, segments.c.id == segment_id)
        ).first()
    if row is None:
        raise not_found(f"segment {segment_id!r}")
    return _as_dict(row)


def create_segment(db: Database, account_id: str, body: dict, by: str) -> dict:
    fields = _check_fields(body, creating=True)
    segment_id = ids.segment_id()
    now = timestamps.now_ms()
    with db.begin() as conn:
        conn.execute(
            segments.insert().values(
                account_id=account_id, id=segment_id, name=fields["name"], description=fields.get("description"),
                created_at=now, created_by=by, updated_at=now, updated_by=by,
            )  # fmt: skip
        )
    return get_segment(db, account_id, segment_id)


def update_segment(db: Database, account_id: str, segment_id: str, body: dict, by: str) -> dict:
    """Change ``name``/``description``; an empty body changes nothing (not even ``updated_at``)."""
    fields = _check_fields(body, creating=False)
    if fields:
        with db.begin() as conn:
            result = conn.execute(
                update(segments)
                .where(segments.c.account_id == account_id, segments.c.id == segment_id)
                .values(**fields, updated_at=timestamps.now_ms(), updated_by=by)
            )
            if result.rowcount == 0:
                raise not_found(f"segment {segment_id!r}")
    return get_segment(db, account_id, segment_id)


def delete_segment(db: Database, account_id: str, segment_id: str) -> None:
    with db.begin() as conn:
        result = conn.execute(
            segments.delete().where(segments.c.account_id == account_id, segments.c.id == segment_id)
        )
        if result.rowcount == 0:
            raise not_found(f"segment {segment_id!r}")
        conn.execute(
            segment_members.delete().where(
                segment_members.c.account_id == account_id, segment_members.c.segment_id == segment_id
            )
        )


def list_members(db: Database, account_id: str, segment_id: str, *, after: str | None = None, limit: int = 50) -> list[str]:
    """Member user ids in id order after ``after`` (keyset paging over the primary key)."""
    where = [segment_members.c.account_id == account_id, segment_members.c.segment_id == segment_id]
    if after is not None:
        where.append(segment_members.c.user_id > after)
    with db.connect() as conn:
        rows = conn.execute(
            select(segment_members.c.user_id).where(*where).order_by(segment_members.c.user_id).limit(limit)
        ).all()
    return [r.user_id for r in rows]
