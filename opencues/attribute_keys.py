"""The attribute-key catalogue: which attribute paths, holding which JSON types, an account's events carry.

A CSV export needs its columns (one per attribute leaf path in the exported rows) and each column's
JSON types (they pick the cell SQL) before its first row. Walking every exported row to find them
made CSV exports 2.6-4× their floor. The catalogue (table ``event_attribute_keys``) lists the
``(path, type)`` pairs of an account's stored events, and every writer of events records its rows'
pairs **in the same transaction as the rows**, so any snapshot's catalogue covers every event that
snapshot sees:

- ``opencues.events`` (track): the group commit writes, with each group, the distinct pairs of its
  rows (``GroupPairs``);
- ``opencues.imports``: each batch records its distinct pairs (``record``);
- anything that writes ``events`` directly (benchmark loaders, migration 0002's backfill) calls
  ``rebuild`` afterwards.

The catalogue may list more than an export's rows (other time ranges, filtered-out events), never
less: ``opencues.exports.attribute_columns`` takes it as the candidate columns and their types,
and reads rows only until every candidate has been seen.

A path is the tuple of keys from the top of the attributes (``("properties", "plan")``), stored as
JSON array text (keys may contain dots). A type is one of string, number, boolean, null, array,
object; ``object`` marks a path that holds a nested object in some event (its cell is empty there,
so a column that also holds scalars needs the type-checking cell expression).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Iterable, Mapping, Sequence

import orjson
from sqlalchemy import Connection, Text, bindparam, cast, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite

from opencues.storage.schema import event_attribute_keys, events

Path = tuple[str, ...]
Pair = tuple[Path, str]

OBJECT = "object"
TYPE_NAMES = {str: "string", int: "number", float: "number", bool: "boolean", type(None): "null", list: "array", dict: OBJECT}
ROW_PAIRS = "attribute_pairs"  # where an events row for ``GroupPairs`` carries its pairs
_MAX_SHAPES = 100_000  # bounds the memory of a walker's shape cache on wildly varied attributes
_MAX_PATHS = 100_000  # bounds the cache of paths' stored text and hash (``_stored_path``) the same way
_FETCH_ROWS = 5_000


class KeyWalker:
    """Collects the ``(path, type)`` pairs of attribute documents into ``pairs``.

    A document, or nested object, whose shape (its path, keys and value types) was seen before
    brings no new pair, so it is not walked again: uniform data costs one tuple and one set
    look-up per row and level."""

    def __init__(self) -> None:
        self.pairs: set[Pair] = set()
        self._shapes: set = set()

    def add(self, document: dict, prefix: Path = ()) -> bool:
        """Record ``document``'s pairs (nested objects too); True when some pair was new."""
        types = tuple(map(type, document.values()))
        shape = (prefix, tuple(document), types)
        grew = False
        if shape not in self._shapes:
            if len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()
            self._shapes.add(shape)
            before = len(self.pairs)
            for key, kind in zip(document, types):
                self.pairs.add((prefix + (key,), TYPE_NAMES.get(kind, "string")))
            grew = len(self.pairs) > before
        if dict in types:
            for key, value in document.items():
                if type(value) is dict and self.add(value, prefix + (key,)):
                    grew = True
        return grew


def pairs_of(document: dict) -> set[Pair]:
    """The pairs of one attributes document."""
    walker = KeyWalker()
    walker.add(document)
    return walker.pairs


def by_path(pairs: Iterable[Pair]) -> dict[Path, set[str]]:
    """``{path: {types}}`` from pairs."""
    types: dict[Path, set[str]] = {}
    for path, kind in pairs:
        types.setdefault(path, set()).add(kind)
    return types


def encode_path(path: Path) -> str:
    return orjson.dumps(path).decode()


# --- reading and writing the catalogue -------------------------------------------------------


def _insert(dialect_name: str):
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    values = {name: bindparam(name) for name in ("account_id", "path_sha256", "type", "path")}
    return insert(event_attribute_keys).values(values).on_conflict_do_nothing()


def _rows(triples: Iterable[tuple[str, Path, str]]) -> list[dict]:
    # One order for every writer: concurrent PostgreSQL transactions inserting overlapping pairs
    # then wait for each other in turn instead of deadlocking.
    rows = []
    for account_id, path, kind in sorted(triples):
        encoded, digest = _stored_path(path)
        rows.append({"account_id": account_id, "path_sha256": digest, "type": kind, "path": encoded})
    return rows


@functools.lru_cache(maxsize=_MAX_PATHS)
def _stored_path(path: Path) -> tuple[str, str]:
    """A path's stored text and its SHA-256 (the key): every track group writes its pairs."""
    encoded = encode_path(path)
    return encoded, hashlib.sha256(encoded.encode()).hexdigest()


def record(conn: Connection, account_id: str, pairs: Iterable[Pair]) -> None:
    """Add ``pairs`` to the account's catalogue in the caller's transaction (known pairs are kept)."""
    rows = _rows((account_id, path, kind) for path, kind in pairs)
    if rows:
        conn.execute(_insert(conn.dialect.name), rows)


def read(conn: Connection, account_id: str) -> dict[Path, set[str]]:
    """The account's catalogue: ``{path: {types}}``."""
    query = select(event_attribute_keys.c.path, event_attribute_keys.c.type).where(
        event_attribute_keys.c.account_id == account_id
    )
    return by_path((tuple(orjson.loads(path)), kind) for path, kind in conn.execute(query))


def rebuild(conn: Connection, account_id: str | None = None) -> None:
    """Replace the catalogue of ``account_id`` (or of every account) by exactly the pairs of the
    stored events, in the caller's transaction: after events were written without ``record``."""
    pg = conn.dialect.name == "postgresql"
    text = cast(events.c.attributes, Text) if pg else type_coerce(events.c.attributes, Text)
    query = select(events.c.account_id, text)
    delete = event_attribute_keys.delete()
    if account_id is not None:
        query = query.where(events.c.account_id == account_id)
        delete = delete.where(event_attribute_keys.c.account_id == account_id)
    walkers: dict[str, KeyWalker] = {}
    loads = orjson.loads
    result = conn.execute(query.execution_options(stream_results=True, yield_per=_FETCH_ROWS))
    for rows in result.partitions():
        for account, document in rows:
            walker = walkers.get(account)
            if walker is None:
                walker = walkers[account] = KeyWalker()
            walker.add(loads(document))
    conn.execute(delete)
    rows = _rows((account, path, kind) for account, walker in walkers.items() for path, kind in walker.pairs)
    if rows:
        conn.execute(_insert(conn.dialect.name), rows)


class GroupPairs:
    """The group commit's companion for event inserts (``Direct.attach``; used by
    ``opencues.events``): records the distinct pairs of the rows being written in their
    transaction, one statement for a whole group (known pairs are kept: ``ON CONFLICT DO NOTHING``).
    Each row carries its pairs under ``ROW_PAIRS``.

    Every group writes its pairs, even those this process wrote before: a process that skipped
    the pairs it remembered committing left the catalogue short after anything deleted them (an
    account reset or deletion, a snapshot restored — in this process or in another one), and each
    CSV export of the account then distrusted it and read every row. A known pair costs one index
    probe in the transaction that writes the events anyway; its encoding is remembered."""

    def __init__(self, dialect_name: str):
        self._statement = _insert(dialect_name)

    def __call__(self, rows: Sequence[Mapping]) -> tuple[list, None]:
        triples = {(row["account_id"], path, kind) for row in rows for path, kind in row[ROW_PAIRS]}
        if not triples:
            return [], None
        return [(self._statement, _rows(triples))], None
