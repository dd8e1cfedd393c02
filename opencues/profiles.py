"""End-user profiles: a flat bag of key-value attributes per (account, user).

Updates merge: each top-level key of an update replaces the stored value (nested objects and
lists are values like any other, replaced whole), and a ``null`` value removes the key. The
same rule serves the synchronous PATCH and the bulk profile import (``merge``).
"""

from __future__ import annotations

import orjson
from sqlalchemy import bindparam, delete, func, select, text

from opencues import attributes, ids, ingestion_rules, timestamps
from opencues.errors import ApiError, bad_request, not_found
from opencues.settings import MAX_ATTRIBUTE_KEYS
from opencues.storage import Database
from opencues.storage.direct import ReadPlan
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
    _text, problem = attributes.encoded(changes, max_keys=max_attribute_keys)
    if problem is not None:
        raise bad_request(problem)
    return changes


def get_profile(db: Database, account_id: str, user_id: str) -> dict:
    _check_user_id(user_id, reading=True)
    return orjson.loads(get_profile_json(db, account_id, user_id))


def get_profile_json(db: Database, account_id: str, user_id: str) -> str:
    """The stored profile as JSON text (the response body as it is), or a 404."""
    return db.direct.run(profile_json_reads(account_id, user_id))


def profile_json_reads(account_id: str, user_id: str) -> ReadPlan[str]:
    """``get_profile_json`` as a read plan (``Direct.run_async`` runs it from the event loop)."""
    _check_user_id(user_id, reading=True)
    rows = yield _SELECT, {"account_id": account_id, "user_id": user_id}
    if not rows:
        raise not_found(f"profile of user {user_id!r}")
    return rows[0][0] or "{}"


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
    """Merge ``changes`` into the user's profile (creating it), committed when this returns, and
    return the profile as stored right after. Attributes the account's ingestion rules drop are
    left out (``rules``: read now when None)."""
    db.direct.write(_upsert(db), [upsert_row(db, account_id, user_id, changes, rules, max_attribute_keys=max_attribute_keys)])
    return get_profile(db, account_id, user_id)


async def update_profile_grouped(
    db: Database, account_id: str, user_id: str, changes: dict, rules: "ingestion_rules.Rules",
    *, max_attribute_keys: int = MAX_ATTRIBUTE_KEYS,
) -> None:
    """``update_profile`` for the server: the update joins the event loop's next group commit
    (``opencues.storage.direct``) and this returns once that commit is done."""
    row = upsert_row(db, account_id, user_id, changes, rules, max_attribute_keys=max_attribute_keys)
    await db.direct.write_grouped(_upsert(db), row)


def upsert_row(
    db: Database, account_id: str, user_id: str, changes: dict, rules: "ingestion_rules.Rules | None" = None,
    *, max_attribute_keys: int = MAX_ATTRIBUTE_KEYS,
) -> dict:
    """The parameters of ``_upsert`` for a profile update, or a 400 naming the field."""
    _check_user_id(user_id)
    check_changes(changes, max_attribute_keys=max_attribute_keys)
    changes, _dropped = (rules or ingestion_rules.load(db, account_id)).filter_profile(changes)
    row = {"account_id": account_id, "user_id": user_id, "now": timestamps.now_ms()}
    if db.is_postgres:
        row["set"] = orjson.dumps({k: v for k, v in changes.items() if v is not None}).decode()
        row["removed"] = [k for k, v in changes.items() if v is None]
    else:
        row["changes"] = orjson.dumps(changes).decode()
    return row


# One statement merges an update into the stored profile, so concurrent updates of one user
# cannot lose each other's keys (each one applies to the row as the one before left it) and no
# read-merge-write round trip holds a lock. PostgreSQL: ``jsonb - keys || set`` replaces the
# top-level keys whole, as ``merge`` does. SQLite: ``opencues_merge(stored, changes)`` is
# ``merge`` itself, a function each connection registers (``opencues.storage.database``).
_UPSERT_POSTGRES = text(
    "INSERT INTO profiles (account_id, user_id, attributes, created_at, updated_at) "
    "VALUES (:account_id, :user_id, CAST(:set AS jsonb), :now, :now) "
    "ON CONFLICT (account_id, user_id) DO UPDATE "
    "SET attributes = (profiles.attributes - CAST(:removed AS text[])) || excluded.attributes, updated_at = excluded.updated_at"
)
_UPSERT_SQLITE = text(
    "INSERT INTO profiles (account_id, user_id, attributes, created_at, updated_at) "
    "VALUES (:account_id, :user_id, opencues_merge('{}', :changes), :now, :now) "
    "ON CONFLICT (account_id, user_id) DO UPDATE "
    "SET attributes = opencues_merge(profiles.attributes, :changes), updated_at = excluded.updated_at"
)
_SELECT = select(profiles.c.attributes).where(
    profiles.c.account_id == bindparam("account_id"), profiles.c.user_id == bindparam("user_id")
)


def _upsert(db: Database):
    statement = _UPSERT_POSTGRES if db.is_postgres else _UPSERT_SQLITE
    # Each row locks its profile until the group commits: one order for every process's groups.
    db.direct.order_rows(statement, _by_user)
    return statement


def _by_user(row: dict) -> tuple[str, str]:
    return row["account_id"], row["user_id"]
