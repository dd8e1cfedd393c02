"""End-user profiles: a flat bag of key-value attributes per (account, user).

Updates merge: each top-level key of an update replaces the stored value (nested objects and
lists are values like any other, replaced whole), and a ``null`` value removes the key. The
same rule serves the synchronous PATCH and the bulk profile import (``merge``).
"""

from __future__ import annotations

import orjson
from sqlalchemy import delete, func, select, update

from opencues import attributes, ids, ingestion_rules, timestamps
from opencues.errors import ApiError, bad_request, not_found
from opencues.settings import MAX_ATTRIBUTE_KEYS
from opencues.storage import Database
from opencues.storage.schema import profiles


def merge(existing: dict, changes: dict) -> dict:
    """The profile after applying ``changes`` to ``existing`` (neither argument is modified).

    Keys keep their position when replaced; new keys are appended in the order given;
    a ``None`` value deletes the key (deleting an absent key is a no-op).
    """
    merged = dict(existing)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _check_user_id(user_id: str, *, reading: bool = False) -> None:
    problem = ids.user_id_problem(user_id, reading=reading)
    if problem is not None:
        raise bad_request(f"`user_id` {problem}")


def check_changes(changes: object, *, max_attribute_keys: int = MAX_ATTRIBUTE_KEYS) -> dict:
    """``changes`` when it is a valid profile update (an object following ``opencues.attributes``), else a 400."""
    if not isinstance(changes, dict):
        raise bad_request("request body must be a JSON object of profile attributes")
    if "" in changes:
        raise bad_request("profile attribute names must be non-empty strings; got `\"\"`")
    try:
        text = orjson.dumps(changes)
    except orjson.JSONEncodeError:  # nested beyond what the encoder writes: the walk names it
        text = None
    problem = attributes.problem(changes, max_keys=max_attribute_keys, text=text)
    if problem is not None:
        raise bad_request(problem)
    return changes


def get_profile(db: Database, account_id: str, user_id: str) -> dict:
    _check_user_id(user_id, reading=True)
    with db.connect() as conn:
        row = conn.execute(
            select(profiles.c.attributes).where(profiles.c.account_id == account_id, profiles.c.user_id == user_id)
        ).first()
    if row is None:
        raise not_found(f"profile of user {user_id!r}")
    return dict(row.attributes or {})


def list_user_ids(db: Database, account_id: str, *, prefix: str = "", after: str | None = None, limit: int = 50) -> list[str]:
    """Ids of users with a profile, in id order, starting with ``prefix``, after ``after``: keyset
    paging, so every page is one range scan of the primary key however deep it is."""
    where = [profiles.c.account_id == account_id]
    if after is not None:
        where.append(profiles.c.user_id > after)
    if prefix:
        where.append(profiles.c.user_id >= prefix)
        where.append(func.substr(profiles.c.user_id, 1, len(prefix)) == prefix)
        if not db.is_postgres:  # SQLite compares text bytewise: the prefix's range ends here
            where.append(profiles.c.user_id < prefix[:-1] + chr(ord(prefix[-1]) + 1))
    with db.connect() as conn:
        rows = conn.execute(select(profiles.c.user_id).where(*where).order_by(profiles.c.user_id).limit(limit)).all()
    return [r.user_id for r in rows]


def delete_profile(db: Database, account_id: str, user_id: str) -> None:
    """Erase the user's profile — every attribute and the user's group membership — keeping the
    user's events (they stay in the history and in exports). 404 ``user not found`` when there is
    no profile; a later update creates a new, empty one."""
    _check_user_id(user_id, reading=True)
    with db.begin() as conn:
        deleted = conn.execute(
            delete(profiles).where(profiles.c.account_id == account_id, profiles.c.user_id == user_id)
        ).rowcount
    if not deleted:
        raise ApiError(404, "user not found")


def update_profile(
    db: Database, account_id: str, user_id: str, changes: dict, rules: "ingestion_rules.Rules | None" = None,
    *, max_attribute_keys: int = MAX_ATTRIBUTE_KEYS,
) -> dict:
    """Merge ``changes`` into the user's profile (creating it), in one transaction, and return
    the new profile. The read-merge-write holds the row (PostgreSQL) or the database's write
    lock (SQLite), so concurrent updates of the same user both land. Attributes the account's
    ingestion rules drop are left out (``rules``: read now when None)."""
    _check_user_id(user_id)
    check_changes(changes, max_attribute_keys=max_attribute_keys)
    changes, _dropped = (rules or ingestion_rules.load(db, account_id)).filter_profile(changes)
    now = timestamps.now_ms()
    key = (profiles.c.account_id == account_id, profiles.c.user_id == user_id)
    with db.begin() as conn:
        # Writing first (an insert that does nothing when the row exists) gives the row something
        # to lock on PostgreSQL, and on SQLite opens the write transaction before the read, so
        # two concurrent updates of one user serialise instead of losing keys.
        conn.execute(
            db.insert(profiles)
            .values(account_id=account_id, user_id=user_id, attributes={}, created_at=now, updated_at=now)
            .on_conflict_do_nothing(index_elements=[profiles.c.account_id, profiles.c.user_id])
        )
        query = select(profiles.c.attributes).where(*key)
        if db.is_postgres:
            query = query.with_for_update()
        stored = conn.execute(query).scalar_one()
        merged = merge(dict(stored or {}), changes)
        conn.execute(update(profiles).where(*key).values(attributes=merged, updated_at=now))
    return merged
