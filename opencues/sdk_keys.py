"""SDK identity-verification keys: secrets customers sign end-user ids with.

opencues stores the keys and their two switches (``enforcement_mode``: SDK calls without a valid
signature get no experiences; ``secure_data_ingest``: unsigned SDK data is refused) and reports
them; it serves no SDK, so it enforces neither. A key's secret is returned once, by the create
call, and stored only as its SHA-256 digest, like an API key's. At most five keys per account.

The request bodies are validated by the same pydantic models the OpenAPI document shows.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from sqlalchemy import and_, func, literal, select, update

from opencues import ids, timestamps
from opencues.accounts import get_account, secret_digest
from opencues.errors import ApiError, bad_request
from opencues.storage import Database
from opencues.storage.schema import accounts, sdk_keys

MAX_KEYS_PER_ACCOUNT = 5  # the vendor's limit
COLUMNS = ("id", "name", "tag_field", "enforcement_mode", "secure_data_ingest", "created_at")
NOT_FOUND = "sdk key not found"
SWITCHES = ("enforcement_mode", "secure_data_ingest")


class SdkKeyCreate(BaseModel):
    """``POST sdk_keys``. Other members (an ``account_id``) are ignored."""

    model_config = ConfigDict(extra="ignore", defer_build=True)  # built at its first use, not at start
    name: StrictStr = Field(min_length=1, description="Required. A name for the key")
    tag_field: StrictStr | None = Field(None, description="Optional. Stored and reported as given")


class SdkKeyTagField(BaseModel):
    """``PATCH sdk_keys/{id}/tag_field`` (or ``PATCH sdk_keys/{id}``)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)
    tag_field: StrictStr | None = Field(description="Required. The new tag field; null clears it")


def validated(model: type[BaseModel], body: object) -> BaseModel:
    """``body`` as ``model``, or a 400 naming the first offending field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "body"
        message = "is required" if error["type"] == "missing" else error["msg"].lower()
        raise bad_request(f"`{where}` {message}") from None


def _as_dict(row) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "tag_field": row.tag_field,
        "enforcement_mode": bool(row.enforcement_mode),
        "secure_data_ingest": bool(row.secure_data_ingest),
        "created_at": timestamps.render(row.created_at),
    }


def list_keys(db: Database, account_id: str) -> list[dict]:
    with db.connect() as conn:
        rows = conn.execute(
            select(sdk_keys).where(sdk_keys.c.account_id == account_id).order_by(sdk_keys.c.created_at, sdk_keys.c.id)
        ).all()
    return [_as_dict(r) for r in rows]


def _key(account_id: str, key_id: str):
    return (sdk_keys.c.account_id == account_id, sdk_keys.c.id == key_id)


def get_key(db: Database, account_id: str, key_id: str) -> dict:
    with db.connect() as conn:
        row = conn.execute(select(sdk_keys).where(*_key(account_id, key_id))).first()
    if row is None:
        raise ApiError(404, NOT_FOUND)
    return _as_dict(row)


def create_key(db: Database, account_id: str, body: object) -> dict:
    """A new key: the key object plus ``secret``, which is never shown again. The sixth key is a 400."""
    fields = validated(SdkKeyCreate, body)
    get_account(db, account_id)
    key_id, secret, now = ids.api_key_id(), ids.api_secret(), timestamps.now_ms()
    values = {
        "account_id": account_id, "id": key_id, "name": fields.name, "tag_field": fields.tag_field,
        "secret_sha256": secret_digest(secret), "enforcement_mode": False, "secure_data_ingest": False,
        "created_at": now,
    }  # fmt: skip
    count = select(func.count()).select_from(sdk_keys).where(sdk_keys.c.account_id == account_id).scalar_subquery()
    # One INSERT … SELECT … WHERE count < 5: the count and the insert are one statement, and on
    # PostgreSQL the account row's lock orders concurrent creates, so no race makes a sixth key.
    insert = sdk_keys.insert().from_select(
        list(values),
        select(*[literal(v, type_=sdk_keys.c[k].type) for k, v in values.items()]).where(
            and_(count < MAX_KEYS_PER_ACCOUNT)
        ),
    ).returning(sdk_keys.c.id)
    with db.begin() as conn:
        if db.is_postgres:
            conn.execute(select(accounts.c.id).where(accounts.c.id == account_id).with_for_update())
        if conn.execute(insert).first() is None:  # (rowcount is -1 here on psycopg)
            raise bad_request(f"maximum of {MAX_KEYS_PER_ACCOUNT} SDK keys per account")
    return {**get_key(db, account_id, key_id), "secret": secret}


def delete_key(db: Database, account_id: str, key_id: str) -> None:
    with db.begin() as conn:
        if conn.execute(sdk_keys.delete().where(*_key(account_id, key_id))).rowcount == 0:
            raise ApiError(404, NOT_FOUND)


def set_tag_field(db: Database, account_id: str, key_id: str, body: object) -> dict:
    fields = validated(SdkKeyTagField, body)
    _update(db, account_id, key_id, tag_field=fields.tag_field)
    return get_key(db, account_id, key_id)


def set_switch(db: Database, account_id: str, key_id: str, switch: str, on: bool) -> None:
    """Turn ``enforcement_mode`` or ``secure_data_ingest`` on or off (idempotent)."""
    if switch not in SWITCHES:
        raise bad_request(f"unknown SDK key setting {switch!r}")
    _update(db, account_id, key_id, **{switch: on})


def _update(db: Database, account_id: str, key_id: str, **values) -> None:
    with db.begin() as conn:
        if conn.execute(update(sdk_keys).where(*_key(account_id, key_id)).values(**values)).rowcount == 0:
            raise ApiError(404, NOT_FOUND)
