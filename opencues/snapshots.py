"""Snapshots: every account's data (or one account's) as one JSON document, saved and restored.

The same document is what ``GET /-/snapshots/{name}`` returns, what ``POST /-/seed`` and
``opencues serve --seed FILE`` load, and what ``opencues control snapshots export`` writes::

    {"format": "opencues-snapshot", "version": 2, "created_at": "2026-12-02T08:00:00.000Z",
     "account_id": null,                  # or the one account it holds
     "tables": {"accounts": {"columns": ["id", "name", "created_at"],
                             "rows": [["acme", "Acme", 1764662400000], ...]},
                "api_keys": {...}, "flows": {...}, ...},
     "files": {"uploads/3f9c….ndjson": "<base64>", ...}}

Rows are the stored values: instants are epoch milliseconds, JSON columns are JSON values, API
keys carry their secret's SHA-256 (never the secret). Surrogate ids (``events.id``,
``job_events.id``) are left out — rows are listed in that order and get new ids on loading — so a
document loads beside other accounts' data without colliding. A table missing from a document
(one written before that table existed) loads as empty; a column missing from a table takes its
default.

``files`` holds the uploaded payload of every job still waiting (an import submitted in
``manual`` job mode, say), base64-encoded, under the job's ``payload_key``: restored into the
file store, the job runs as if it had never left. Only keys some job row of the document names
are accepted.

``version`` changes when the document's meaning changes; older versions are converted by
``UPGRADES`` or refused with a message saying so. Version 1 had no ``files``: it loads as a
version 2 document without files, and a waiting job whose payload is neither in the document nor
still in the file store is refused (400) rather than loaded to fail later. The format is
described for users in docs/snapshots.md.

Adding a table that holds account data is one line in ``PARTS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import base64
import binascii

import orjson
from sqlalchemy import JSON, Connection, Table, delete, select

from opencues import event_counts, events, key_cache, timestamps
from opencues.errors import ApiError, bad_request
from opencues.storage import schema

FORMAT = "opencues-snapshot"
VERSION = 2


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


def _upgrade_1_to_2(document: dict) -> dict:
    """Version 1 carried no job payloads: the same document with none (see the module docstring)."""
    return {**document, "version": 2, "files": {}}


# version → a function turning a document of that version into one of the next version.
UPGRADES: dict[int, Callable[[dict], dict]] = {1: _upgrade_1_to_2}

WAITING = "IN_PROGRESS"  # the status of a job that has not ended (opencues.jobs.JobStatus)


def dump(conn: Connection, account_id: str | None = None, file_store=None) -> dict:
    """The snapshot document of every account's data, or of one account's — with the payloads of
    waiting jobs read from ``file_store`` (without one, ``files`` is empty)."""
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
        "files": _waiting_payloads(tables, file_store),
    }


def _payload_keys(tables: dict, *, waiting_only: bool) -> dict[str, str]:
    """payload key → job id, of the jobs in ``tables`` (those not ended, with ``waiting_only``)."""
    content = tables.get("jobs")
    if not content:
        return {}
    columns = content["columns"]
    if "payload_key" not in columns:
        return {}
    key_at, id_at = columns.index("payload_key"), columns.index("id")
    status_at = columns.index("status") if "status" in columns else None
    return {
        row[key_at]: row[id_at]
        for row in content["rows"]
        if isinstance(row, list) and len(row) == len(columns) and isinstance(row[key_at], str)
        and not (waiting_only and status_at is not None and row[status_at] != WAITING)
    }  # fmt: skip


def _waiting_payloads(tables: dict, file_store) -> dict[str, str]:
    if file_store is None:
        return {}
    files = {}
    for key in _payload_keys(tables, waiting_only=True):
        if file_store.exists(key):
            with file_store.open(key) as handle:
                files[key] = base64.b64encode(handle.read()).decode("ascii")
    return files


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
    files = document.setdefault("files", {})
    if not isinstance(files, dict):
        raise bad_request("`files` of the snapshot must be an object")
    named = _payload_keys(tables, waiting_only=False)
    for key, encoded in files.items():
        if key not in named:
            raise bad_request(f"`files`: {key!r} is not the payload of any job in the snapshot")
        if not isinstance(encoded, str):
            raise bad_request(f"`files.{key}` must be a base64 string")
        try:
            base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"`files.{key}` is not valid base64") from None
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
        if not (keep_account and part.keep_on_account_reset):
            _delete_rows(conn, part, account_id)
    if not keep_account:
        key_cache.announce(conn)  # its keys: forgotten by every process when this commits


def delete_everything(conn: Connection) -> None:
    for part in reversed(PARTS):
        _delete_rows(conn, part, None)
    key_cache.announce(conn)


def _delete_rows(conn: Connection, part: Part, account_id: str | None) -> None:
    """Delete a part's rows: one account's, or every account's (None). Events go with their hourly
    counts in one step (``event_counts.delete_events_and_counts``: a track committed meanwhile
    keeps both or neither), so the counts' own turn has nothing left to do."""
    if part.table is schema.event_name_hours:
        return
    if part.table is schema.events:
        event_counts.delete_events_and_counts(conn, account_id)
    elif account_id is None:
        conn.execute(delete(part.table))
    else:
        conn.execute(delete(part.table).where(part.of_account(account_id)))


def load(conn: Connection, document: dict, *, replace_all: bool = False, file_store=None) -> dict:
    """Load a (decoded) document: the accounts it holds are replaced by their content in it — or,
    with ``replace_all``, everything is — and the payloads of its waiting jobs are written to
    ``file_store`` (before the rows are committed: a loaded job never lacks its payload).
    Returns ``{"accounts": [...], "rows": n, "files": n}``."""
    files = _restore_payloads(document, file_store)
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
    return {"accounts": accounts_in(document), "rows": total, "files": files}


def _restore_payloads(document: dict, file_store) -> int:
    """Write the document's payloads; 400 for a waiting job whose payload is nowhere."""
    files = document.get("files") or {}
    if file_store is None:
        return 0
    for key, job_id in _payload_keys(document["tables"], waiting_only=True).items():
        if key not in files and not file_store.exists(key):
            raise bad_request(
                f"`files`: job {job_id!r} waits on an uploaded payload the snapshot does not carry "
                f"(a version 1 snapshot carries none) and the file store no longer has; "
                "take the snapshot again with this server, or end the job before taking it"
            )
    for key, encoded in files.items():
        with file_store.writer(key) as out:
            out.write(base64.b64decode(encoded))
    return len(files)


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
