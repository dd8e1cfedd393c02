"""Groups: the accounts or companies end users belong to, each with a flat bag of properties.

Properties merge like a profile's (``profiles.merge``: a key replaces, ``null`` removes). A user
belongs to at most one group at a time, kept on the user's profile row (``profiles.group_id``),
so erasing a profile also ends its membership. Group ids follow the user-id length rule.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import bindparam, select, update

from opencues import ids, ingestion_rules, profiles, timestamps
from opencues.errors import ApiError, bad_request, invalid_field
from opencues.settings import MAX_ATTRIBUTE_KEYS
from opencues.storage import Database
from opencues.storage.schema import groups
from opencues.storage.schema import profiles as profiles_table

MAX_USER_IDS = 10_000  # per ``POST groups/{id}/users`` request: it is applied in one transaction


def not_found() -> ApiError:
    return ApiError(404, "group not found")


def check_group_id(group_id: str, *, reading: bool = False) -> str:
    """``group_id`` when it follows the user-id rule (``opencues.ids``; its look-up form with
    ``reading``), else a 400 naming it."""
    problem = ids.user_id_problem(group_id, reading=reading)
    if problem is not None:
        raise bad_request(f"`group_id` {problem}")
    return group_id


def get_group(db: Database, account_id: str, group_id: str) -> dict:
    """``{"group_id": …, <properties>}``; 404 ``group not found``."""
    check_group_id(group_id, reading=True)
    with db.connect() as conn:
        row = conn.execute(
            select(groups.c.attributes).where(groups.c.account_id == account_id, groups.c.group_id == group_id)
        ).first()
    if row is None:
        raise not_found()
    return {"group_id": group_id, **{k: v for k, v in (row.attributes or {}).items() if k != "group_id"}}


def _ensure(conn, db: Database, account_id: str, group_id: str, now: int) -> None:
    conn.execute(
        db.insert(groups)
        .values(account_id=account_id, group_id=group_id, attributes={}, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=[groups.c.account_id, groups.c.group_id])
    )


def update_group(
    db: Database, account_id: str, group_id: str, changes: Any, rules: ingestion_rules.Rules | None = None,
    *, max_attribute_keys: int = MAX_ATTRIBUTE_KEYS,
) -> dict:
    """Merge ``changes`` into the group's properties (creating the group) in one transaction,
    after the account's ingestion rules (``rules``: read now when None); return the properties.
    A ``group_id`` key in the body is the id, never a property."""
    check_group_id(group_id)
    if not isinstance(changes, dict):
        raise bad_request("request body must be a JSON object of group properties")
    if "" in changes:
        raise bad_request("group property names must be non-empty strings; got `\"\"`")
    profiles.check_changes(changes, max_attribute_keys=max_attribute_keys)  # nesting, key count, NUL
    changes = {k: v for k, v in changes.items() if k != "group_id"}
    changes, _dropped = (rules or ingestion_rules.load(db, account_id)).filter_group(changes)
    now = timestamps.now_ms()
    key = (groups.c.account_id == account_id, groups.c.group_id == group_id)
    with db.begin() as conn:
        _ensure(conn, db, account_id, group_id, now)  # first: locks the row / takes SQLite's write lock
        query = select(groups.c.attributes).where(*key)
        if db.is_postgres:
            query = query.with_for_update()
        merged = profiles.merge(dict(conn.execute(query).scalar_one() or {}), changes)
        conn.execute(update(groups).where(*key).values(attributes=merged, updated_at=now))
    return merged


class GroupUsers(BaseModel):
    """The body of ``POST groups/{id}/users`` (it validates it)."""

    model_config = ConfigDict(defer_build=True)  # built at its first use, not at start

    user_ids: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        min_length=1, max_length=MAX_USER_IDS, description="Required. IDs of the users to associate with the group"
    )


def user_ids_of(body: Any) -> list[str]:
    """The ``user_ids`` of a ``POST groups/{id}/users`` body (400 naming the bad item)."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    try:
        user_ids = GroupUsers.model_validate({"user_ids": body.get("user_ids")} if "user_ids" in body else {}, strict=True).user_ids
    except ValidationError as exc:
        raise invalid_field(exc) from None
    for index, user_id in enumerate(user_ids):
        problem = ids.user_id_problem(user_id)
        if problem is not None:
            raise bad_request(f"`user_ids[{index}]` {problem}")
    return list(dict.fromkeys(user_ids))


def add_users(db: Database, account_id: str, group_id: str, body: Any) -> int:
    """Make ``group_id`` the current group of each user of the body (unknown users get an empty
    profile; the group is created if need be), in one transaction. Returns how many users."""
    check_group_id(group_id)
    user_ids = user_ids_of(body)
    now = timestamps.now_ms()
    insert = db.insert(profiles_table).values(
        {name: bindparam(name) for name in ("account_id", "user_id", "attributes", "created_at", "updated_at", "group_id")}
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[profiles_table.c.account_id, profiles_table.c.user_id],
        set_={"group_id": insert.excluded.group_id, "updated_at": insert.excluded.updated_at},
    )
    # Sorted: concurrent requests lock the profile rows in one order (no deadlock). One compiled
    # statement run for every row (a multi-row VALUES statement was compiled anew for each
    # request: seconds for the largest list).
    rows = [{"account_id": account_id, "user_id": user_id, "attributes": {}, "created_at": now, "updated_at": now,
             "group_id": group_id} for user_id in sorted(user_ids)]  # fmt: skip
    with db.begin() as conn:
        _ensure(conn, db, account_id, group_id, now)
        conn.execute(upsert, rows)
    return len(user_ids)


def group_of(db: Database, account_id: str, user_id: str) -> str | None:
    """The user's current group id (None when the user has none or no profile)."""
    with db.connect() as conn:
        return conn.execute(
            select(profiles_table.c.group_id).where(
                profiles_table.c.account_id == account_id, profiles_table.c.user_id == user_id
            )
        ).scalar()
