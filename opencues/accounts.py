"""Accounts and their API keys.

A key is a random id plus a 256-bit random secret. Only the secret's SHA-256 digest is stored: with
that much entropy a slow password hash adds nothing but per-request cost. A revoked key stops
working at once on every server process: on SQLite every request reads its key; on PostgreSQL
each process remembers keys it has seen and forgets them when a revocation commits
(``opencues.key_cache``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from opencues import ids, key_cache
from opencues.errors import ApiError, not_found
from opencues.storage import Database
from opencues.storage.schema import accounts, api_keys
from opencues.timestamps import now_ms


@dataclass(frozen=True)
class Principal:
    """Who is calling: the API key and the account it belongs to."""

    key_id: str
    account_id: str
    read_only: bool


def create_account(db: Database, account_id: str | None = None, name: str | None = None) -> dict:
    account_id = account_id or ids.account_id()
    record = {"id": account_id, "name": name or f"Account {account_id}", "created_at": now_ms()}
    with db.begin() as conn:
        if conn.execute(select(accounts.c.id).where(accounts.c.id == account_id)).first():
            raise ApiError(409, f"account {account_id!r} already exists")
        conn.execute(accounts.insert().values(**record))
    return {"id": record["id"], "name": record["name"]}


def get_account(db: Database, account_id: str) -> dict:
    with db.connect() as conn:
        row = conn.execute(select(accounts.c.id, accounts.c.name).where(accounts.c.id == account_id)).first()
    if row is None:
        raise not_found(f"account {account_id!r}")
    return {"id": row.id, "name": row.name}


def list_accounts(db: Database) -> list[dict]:
    """Every account, in id order (for the admin's view in Studio)."""
    with db.connect() as conn:
        rows = conn.execute(select(accounts.c.id, accounts.c.name).order_by(accounts.c.id)).all()
    return [{"id": r.id, "name": r.name} for r in rows]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    db: Database, account_id: str, read_only: bool = False, *, key: str | None = None, secret: str | None = None
) -> dict:
    """A new key (``key`` and ``secret`` generated unless given: test harnesses pick fixed ones).
    The account is looked up in the key's own transaction: one connection and one commit (on
    PostgreSQL a separate look-up had cost two more round trips)."""
    key, secret = key or ids.api_key_id(), secret or ids.api_secret()
    with db.begin() as conn:
        if conn.execute(select(accounts.c.id).where(accounts.c.id == account_id)).first() is None:
            raise not_found(f"account {account_id!r}")
        conn.execute(
            api_keys.insert().values(
                id=key, account_id=account_id, secret_sha256=_digest(secret), read_only=read_only, created_at=now_ms()
            )
        )
    return {"key": key, "secret": secret, "account_id": account_id, "read_only": read_only}


def list_keys(db: Database, account_id: str) -> list[dict]:
    with db.connect() as conn:
        rows = conn.execute(
            select(api_keys.c.id, api_keys.c.read_only, api_keys.c.created_at, api_keys.c.revoked_at)
            .where(api_keys.c.account_id == account_id)
            .order_by(api_keys.c.created_at)
        ).all()
    return [
        {"key": r.id, "account_id": account_id, "read_only": r.read_only, "revoked": r.revoked_at is not None}
        for r in rows
    ]


def revoke_key(db: Database, key: str) -> None:
    with db.begin() as conn:
        result = conn.execute(
            update(api_keys).where(api_keys.c.id == key, api_keys.c.revoked_at.is_(None)).values(revoked_at=now_ms())
        )
        if result.rowcount:
            key_cache.announce(conn, key)  # other processes forget it when this commits
    key_cache.forget_everywhere(key)  # and this one now
    if result.rowcount == 0:
        raise not_found(f"active API key {key!r}")


def authenticate(db: Database, key: str, secret: str) -> Principal | None:
    """The principal for a key and secret, or None when they do not match an active key."""
    # Every request runs this. PostgreSQL: from this process's cache when this key and secret
    # authenticated before (and no revocation arrived since); otherwise one indexed SELECT.
    digest = _digest(secret)
    cache = db.key_cache
    if cache is not None:
        principal = cache.get(key, digest)
        if principal is not None:
            return principal
        generation = cache.generation  # before the read: a revocation meanwhile means no store
    row = db.direct.fetch_one(_ACTIVE_KEY, {"key": key})
    expected = row[1] if row else _digest("")
    # Compare even when the key is unknown so timing does not reveal which keys exist.
    matches = hmac.compare_digest(expected, digest)
    if row is None or not matches:
        return None
    principal = Principal(key_id=key, account_id=row[0], read_only=bool(row[2]))
    if cache is not None:
        cache.put(key, digest, principal, generation)
    return principal


def active_key(db: Database, key: str) -> Principal | None:
    """The principal of an active key, without its secret: a Studio session signed in with the
    secret once, and each of its requests checks the key is still active (revocation is immediate)."""
    row = db.direct.fetch_one(_ACTIVE_KEY, {"key": key})
    return None if row is None else Principal(key_id=key, account_id=row[0], read_only=bool(row[2]))


_ACTIVE_KEY = select(api_keys.c.account_id, api_keys.c.secret_sha256, api_keys.c.read_only).where(
    api_keys.c.id == bindparam("key"), api_keys.c.revoked_at.is_(None)
)


# Other secrets the server keeps (SDK keys' secrets) are stored the same way.
secret_digest = _digest
