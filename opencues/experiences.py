"""The eight experience types: checklists, pins, banners, launchpads, mobile, embeds, nps, flows-v2.

Each type is its own API resource (``/pins``, ``/flows-v2``…) with the same four calls: list, get,
publish, unpublish. Seven share one object shape (§5.2 of the spec: ``theme`` and ``preview_url``
only on pins and banners); checklists have their own (§5.3: ``internal_name`` and ``title``
instead of ``name``, ``items``, ``styles``…). Times are epoch-millisecond numbers, unlike flows.

The API cannot create content: operators load it with ``opencues content import``. What
publishing changes (``published``, ``state``, ``updated_*``) is kept in columns; the rest of the
object (steps, traits, items…) is stored as loaded and returned as is.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update

from opencues import tags, timestamps
from opencues.errors import ApiError, bad_request
from opencues.flows import FREQUENCIES
from opencues.storage import Database
from opencues.storage.schema import experiences

PUBLISHED, DRAFT = "PUBLISHED", "DRAFT"
MAX_STATE_LENGTH = 32  # the `state` column's width

# The fields kept in columns (and `id`, `account_id`, `tag_ids`/`tags`, `checklist_id`, `url`,
# which are derived); every other field of a kind lives in the stored document.
_COLUMN_FIELDS = {"id", "account_id", "published", "state", "created_at", "updated_at", "created_by", "updated_by"}
_DERIVED = {"tags", "checklist_id", "url"}

# Field readers for loading content: each returns the value or raises a 400 naming the field.
_TEXT, _BOOL, _LIST, _OBJECT = "string", "boolean", "array", "object"
_PY_TYPES = {_TEXT: str, _BOOL: bool, _LIST: list, _OBJECT: dict}


@dataclass(frozen=True)
class Kind:
    """One experience type: its resource name, field order, default ``type`` and 404 detail."""

    resource: str
    fields: tuple[str, ...]
    default_type: str | None
    not_found: str
    default_platform: str | None = None


_EXPERIENCE = (
    "id", "type", "account_id", "app_id", "name", "platform", "published", "state", "frequency",
    "created_at", "created_by", "updated_at", "updated_by", "steps", "traits", "theme", "preview_url",
    "locked_for_localization", "contains_localized_blocks", "tag_ids", "tags", "url",
)  # fmt: skip
_UNTHEMED = tuple(f for f in _EXPERIENCE if f not in ("theme", "preview_url"))
_CHECKLIST = (
    "id", "checklist_id", "type", "account_id", "internal_name", "title", "state", "published",
    "is_dismissable", "is_sequential", "open_behavior", "intro_flow_id", "completion_flow_id",
    "items", "rule", "styles", "text_tokens", "created_at", "updated_at", "created_by", "updated_by",
)  # fmt: skip

_NOT_FOUND = "experience not found"
KINDS: dict[str, Kind] = {
    k.resource: k
    for k in (
        Kind("checklists", _CHECKLIST, None, "checklist not found"),
        Kind("pins", _EXPERIENCE, "persistent", _NOT_FOUND, "web"),
        Kind("banners", _EXPERIENCE, "banner", _NOT_FOUND, "web"),
        Kind("launchpads", _UNTHEMED, "launchpad", _NOT_FOUND, "web"),
        Kind("mobile", _UNTHEMED, "flow", _NOT_FOUND),
        Kind("embeds", _UNTHEMED, "embed", _NOT_FOUND, "web"),
        Kind("nps", _UNTHEMED, "nps", _NOT_FOUND, "web"),
        Kind("flows-v2", _UNTHEMED, "flow", _NOT_FOUND, "web"),
    )
}
TYPES = tuple(KINDS)

_FIELD_TYPES = {
    **dict.fromkeys(
        ("type", "app_id", "name", "platform", "theme", "preview_url", "internal_name", "title",
         "open_behavior", "intro_flow_id", "completion_flow_id", "state", "created_by", "updated_by"),
        _TEXT,
    ),
    **dict.fromkeys(
        ("published", "locked_for_localization", "contains_localized_blocks", "is_dismissable", "is_sequential"),
        _BOOL,
    ),
    **dict.fromkeys(("steps", "traits"), _LIST),
    **dict.fromkeys(("items", "rule", "styles", "text_tokens"), _OBJECT),
}  # fmt: skip


def kind(resource: str) -> Kind:
    try:
        return KINDS[resource]
    except KeyError:
        raise bad_request(f"unknown experience type {resource!r}; one of {', '.join(TYPES)}") from None


def columns(resource: str) -> tuple[str, ...]:
    """The object's fields in order: the JSON key order and the CSV columns."""
    return kind(resource).fields


def _as_dict(k: Kind, row) -> dict:
    document = row.document or {}
    known = {
        "id": row.id,
        "checklist_id": row.id,
        "account_id": row.account_id,
        "published": bool(row.published),
        "state": row.state,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "created_by": row.created_by,
        "updated_by": row.updated_by,
        "tag_ids": document.get("tag_ids") or [],
        "tags": tags.as_map(document.get("tag_ids")),
    }
    return {f: known[f] if f in known else document.get(f) for f in k.fields if f != "url"}


def _order():
    return (func.coalesce(experiences.c.created_at, experiences.c.updated_at), experiences.c.id)


def list_experiences(db: Database, account_id: str, resource: str) -> list[dict]:
    k = kind(resource)
    with db.connect() as conn:
        rows = conn.execute(
            select(experiences)
            .where(experiences.c.account_id == account_id, experiences.c.kind == k.resource)
            .order_by(*_order())
        ).all()
    return [_as_dict(k, r) for r in rows]


def get_experience(db: Database, account_id: str, resource: str, experience_id: str) -> dict:
    k = kind(resource)
    with db.connect() as conn:
        row = conn.execute(select(experiences).where(*_key(account_id, k, experience_id))).first()
    if row is None:
        raise ApiError(404, k.not_found)
    return _as_dict(k, row)


def _key(account_id: str, k: Kind, experience_id: str):
    return (experiences.c.account_id == account_id, experiences.c.kind == k.resource, experiences.c.id == experience_id)


def set_published(db: Database, account_id: str, resource: str, experience_id: str, published: bool, by: str) -> None:
    """Publish or unpublish (``published`` and ``state``, stamping ``updated_*``); a no-op when
    already in that state, as for flows."""
    k = kind(resource)
    with db.begin() as conn:
        result = conn.execute(
            update(experiences)
            .where(*_key(account_id, k, experience_id), experiences.c.published == (not published))
            .values(
                published=published, state=PUBLISHED if published else DRAFT,
                updated_at=timestamps.now_ms(), updated_by=by,
            )  # fmt: skip
        )
        if result.rowcount == 0:
            if conn.execute(select(experiences.c.id).where(*_key(account_id, k, experience_id))).first() is None:
                raise ApiError(404, k.not_found)


def find(db: Database, account_id: str, experience_id: str) -> tuple[str, dict] | None:
    """(resource, object) of the experience of any type with this id, or None."""
    with db.connect() as conn:
        row = conn.execute(
            select(experiences)
            .where(experiences.c.account_id == account_id, experiences.c.id == experience_id)
            .order_by(experiences.c.kind)
            .limit(1)
        ).first()
    return None if row is None else (row.kind, _as_dict(KINDS[row.kind], row))


# --- loading content (``opencues content import``) ---


def _checked(item: dict, field: str):
    value = item.get(field)
    expected = _FIELD_TYPES.get(field)
    if value is not None and expected is not None and not isinstance(value, _PY_TYPES[expected]):
        raise bad_request(f"`{field}` must be {'an' if expected[0] in 'ao' else 'a'} {expected} or null")
    if expected == _LIST and value is not None:  # steps and traits are arrays of objects
        for index, element in enumerate(value):
            if not isinstance(element, dict):
                raise bad_request(f"`{field}[{index}]` must be an object")
    return value


def row_from_object(account_id: str, resource: str, item: object, now: int) -> dict:
    """An ``experiences`` row from an object in the type's API shape. Unknown fields are
    dropped; ``id``, times (epoch ms or ISO strings) and typed fields are checked (400)."""
    k = kind(resource)
    if not isinstance(item, dict):
        raise bad_request(f"each {resource} object must be a JSON object")
    document = {}
    for field in k.fields:
        if field in _COLUMN_FIELDS or field in _DERIVED or field == "tag_ids":
            continue
        value = _checked(item, field)
        if field == "frequency" and value is not None and value not in FREQUENCIES:
            raise bad_request(f"`frequency` must be one of {', '.join(FREQUENCIES)} or null")
        document[field] = value
    if "type" in document and document["type"] is None and "type" not in item:
        document["type"] = k.default_type
    if "platform" in document and "platform" not in item:
        document["platform"] = k.default_platform
    if "tag_ids" in k.fields:
        document["tag_ids"] = tags.tag_ids_of(item)
    published, state = _checked(item, "published"), tags.optional_text(item, "state", MAX_STATE_LENGTH)
    if published is None:
        published = state == PUBLISHED
    if state is None:
        state = PUBLISHED if published else DRAFT
    created = tags.optional_time(item, "created_at")
    return {
        "account_id": account_id,
        "kind": k.resource,
        "id": tags.object_id(item),
        "published": published,
        "state": state,
        "created_at": created if created is not None else now,
        "updated_at": tags.optional_time(item, "updated_at") or created or now,
        "created_by": tags.optional_text(item, "created_by", tags.MAX_AUTHOR_LENGTH),
        "updated_by": tags.optional_text(item, "updated_by", tags.MAX_AUTHOR_LENGTH),
        "document": document,
    }


def replace(conn, account_id: str, row: dict) -> bool:
    """Write one experience row, replacing any of its type with its id; True when it replaced one."""
    k = KINDS[row["kind"]]
    existed = conn.execute(experiences.delete().where(*_key(account_id, k, row["id"]))).rowcount > 0
    conn.execute(experiences.insert().values(**row))
    return existed
