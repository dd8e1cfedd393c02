"""Snapshots: every account's data (or one account's) as one JSON document, saved and restored.

The same document is what ``GET /-/snapshots/{name}`` returns, what ``POST /-/seed`` and
``opencues serve --seed FILE`` load, and what ``opencues control snapshots export`` writes::

    {"format": "opencues-snapshot", "version": 1, "created_at": "2026-12-02T08:00:00.000Z",
     "account_id": null,                  # or the one account it holds
     "tables": {"accounts": {"columns": ["id", "name", "created_at"],
                             "rows": [["acme", "Acme", 1764662400000], ...]},
                "api_keys": {...}, "flows": {...}, ...}}

Rows are the stored values: instants are epoch milliseconds, JSON columns are JSON values, API
keys carry their secret's SHA-256 (never the secret). Surrogate ids (``events.id``,
``job_events.id``) are left out — rows are listed in that order and get new ids on loading — so a
document loads beside other accounts' data without colliding. A table missing from a document
(one written before that table existed) loads as empty; a column missing from a table takes its
default. ``version`` changes only when an existing table's meaning changes; older versions are
converted by ``UPGRADES`` or refused with a message saying so.

Adding a table that holds account data is one line in ``PARTS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import orjson
from sqlalchemy import JSON, Connection, Table, delete, select

from opencues import event_counts, events, timestamps
from opencues.errors import ApiError, bad_request
from opencues.storage import schema

FORMAT = "opencues-snapshot"
VERSION = 1


@dataclass(frozen=True)
class Part:
    """A table holding account data: which column names the account, or — for rows that belong to
    an account through a parent row — the column pointing at the parent (``via``)."""

    table: Table
    account_column: str = "account_id"
    via: tuple[str, Table] | None = None
    keep_on_account_reset: bool = False  # the account itself and its keys survive a data reset
    # Derived from other tables (``event_name_hours`` from ``events``): not written into
    # documents; deleted with the account's data and rebuilt after a load (``_rebuild_derived``).
    derived: bool = False

    @property
    def name(self) -> str:
        return str(self.table.name)  # a plain str: SQLAlchemy's quoted_name is not a JSON key to orjson

    def columns(self) -> list:
        # Surrogate auto-increment ids are left out (see the module docstring), and so is
        # ``events.flow_id``: a copy of ``attributes.flowId``, computed again on loading.
        return [c for c in self.table.columns if not (c.primary_key and c.autoincrement is True) and c is not schema.events.c.flow_id]

    def of_account(self, account_id: str):
        """The WHERE clause selecting one account's rows."""
        if self.via is None:
            return self.table.c[self.account_column] == account_id
        column, parent = self.via
        return self.table.c[column].in_(select(parent.c.id).where(parent.c.account_id == account_id))


# Every table holding account data, parents before children (the order rows are loaded in;
# deletions run backwards). Adding a table: one line here.
PARTS: list[Part] = [
    Part(schema.accounts, "id", keep_on_account_reset=True),
    Part(schema.api_keys, keep_on_account_reset=True),
    Part(schema.flows),
    Part(schema.tags),
    Part(schema.experiences),
    Part(schema.sdk_keys),
    Part(schema.ingestion_rules),
    Part(schema.segments),
    Part(schema.segment_members),
    Part(schema.profiles),
    Part(schema.groups),
    Part(schema.events),
    Part(schema.event_name_hours, derived=True),
    Part(schema.event_attribute_keys),
    Part(schema.jobs),
    Part(schema.job_events, via=("job_id", schema.jobs)),
    Part(schema.idempotency_keys),
]

# Tables that are not account data (the control API's own state, Alembic's): never snapshotted.
NOT_ACCOUNT_DATA = {"control_faults", "control_requests", "control_job_modes", "control_snapshots"}

# version → a function turning a document of that version into one of the next version.
UPGRADES: dict[int, Callable[[dict], dict]] = {}


def dump(conn: Connection, account_id: str | None = None) -> dict:
    """The snapshot document of every account's data, or of one account's."""
    tables = {}
    for part in PARTS:
        if part.derived:
            continue
        columns = part.columns()
        query = select(*columns)
        if account_id is not None:
            query = query.where(part.of_account(account_id))
        query = query.order_by(*part.table.primary_key.columns)
        tables[part.name] = {"columns": [str(c.name) for c in columns], "rows": [list(r) for r in conn.execute(query)]}
    return {
        "format": FORMAT,
        "version": VERSION,
        "created_at": timestamps.render(timestamps.now_ms()),
        "account_id": account_id,
        "tables": tables,
    }


def encode(document: dict) -> bytes:
    return orjson.dumps(document)


def decode(raw: bytes | str) -> dict:
    """A snapshot document read and checked (400 naming what is wrong), upgraded to ``VERSION``."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the snapshot is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise bad_request(f'not a snapshot: expected a JSON object with "format": "{FORMAT}"')
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise bad_request("`version` of the snapshot must be an integer")
    if version > VERSION:
        raise bad_request(
            f"snapshot format version {version} is newer than this server's ({VERSION}); upgrade opencues to load it"
        )
    while version < VERSION:
        upgrade = UPGRADES.get(version)
        if upgrade is None:
            raise bad_request(f"snapshot format version {version} is no longer supported (this server reads {VERSION})")
        document = upgrade(document)
        version = document["version"]
    tables = document.get("tables")
    if not isinstance(tables, dict):
        raise bad_request("`tables` of the snapshot must be an object")
    known = {part.name: part for part in PARTS}
    for name, content in tables.items():
        part = known.get(name)
        if part is None:
            raise bad_request(f"`tables.{name}`: this server has no such table")
        if not isinstance(content, dict) or not isinstance(content.get("columns"), list) or not isinstance(content.get("rows"), list):
            raise bad_request(f"`tables.{name}` must be an object with `columns` and `rows` lists")
        names = {c.name for c in part.table.columns}
        for column in content["columns"]:
            if column not in names:
                raise bad_request(f"`tables.{name}.columns`: {name} has no column {column!r}")
    account_id = document.get("account_id")
    if account_id is not None and not isinstance(account_id, str):
        raise bad_request("`account_id` of the snapshot must be a string or null")
    return document


def accounts_in(document: dict) -> list[str]:
    """The accounts a document holds data of."""
    content = document["tables"].get("accounts")
    if not content:
        return [document["account_id"]] if document.get("account_id") else []
    index = content["columns"].index("id")
    return [row[index] for row in content["rows"]]


def delete_account_data(conn: Connection, account_id: str, *, keep_account: bool = False) -> None:
    """Remove an account's data (children first); with ``keep_account`` the account and its keys stay."""
    for part in reversed(PARTS):
        if keep_account and part.keep_on_account_reset:
            continue
        conn.execute(delete(part.table).where(part.of_account(account_id)))


def delete_everything(conn: Connection) -> None:
    for part in reversed(PARTS):
        conn.execute(delete(part.table))


def load(conn: Connection, document: dict, *, replace_all: bool = False) -> dict:
    """Load a (decoded) document: the accounts it holds are replaced by their content in it — or,
    with ``replace_all``, everything is. Returns ``{"accounts": [...], "rows": n}``."""
    if replace_all:
        delete_everything(conn)
    else:
        for account_id in accounts_in(document):
            delete_account_data(conn, account_id)
    total = 0
    for part in PARTS:
        content = document["tables"].get(part.name)
        if part.derived or not content or not content["rows"]:
            continue
        columns = content["columns"]
        usable = {c.name for c in part.columns()}
        picked = [i for i, c in enumerate(columns) if c in usable]
        rows = []
        for number, row in enumerate(content["rows"]):
            if not isinstance(row, list) or len(row) != len(columns):
                raise bad_request(f"`tables.{part.name}.rows[{number}]` must be a list of {len(columns)} values")
            rows.append({columns[i]: row[i] for i in picked})
        if part.table is schema.events:
            for row in rows:
                attributes = row.get("attributes")
                row["flow_id"] = events.flow_id_of(attributes) if isinstance(attributes, dict) else None
        try:
            for batch in _batches_by_null_documents(part, rows):
                conn.execute(part.table.insert(), batch)
        except Exception as exc:  # noqa: BLE001 - a constraint the document breaks: the caller's error
            if isinstance(exc, ApiError):
                raise
            message = str(getattr(exc, "orig", exc)).splitlines()[0]
            raise bad_request(f"`tables.{part.name}`: rows cannot be loaded: {message}") from None
        total += len(rows)
    _rebuild_derived(conn, None if replace_all else accounts_in(document))
    return {"accounts": accounts_in(document), "rows": total}


def _rebuild_derived(conn: Connection, account_ids: list[str] | None) -> None:
    """The derived tables of the accounts just loaded (of every account: None)."""
    if account_ids is None:
        event_counts.rebuild(conn)
    for account_id in account_ids or ():
        event_counts.rebuild(conn, account_id)


_LOAD_BATCH = 10_000


def _batches_by_null_documents(part: Part, rows: list[dict]):
    """``rows`` in insert batches, a SQL NULL in a JSON column left out of its row rather than
    given as None — which the JSON type would store as the JSON document ``null``, so a restore
    would not be exact. Rows with the same such columns go together (one executemany each)."""
    documents = [c.name for c in part.columns() if isinstance(c.type, JSON)]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        nulls = tuple(name for name in documents if name in row and row[name] is None)
        if nulls:
            row = {k: v for k, v in row.items() if k not in nulls}
        group = groups.setdefault(nulls, [])
        group.append(row)
        if len(group) >= _LOAD_BATCH:
            yield group
            groups[nulls] = []
    yield from (group for group in groups.values() if group)
