"""Ingestion filtering rules: which event names, profile attributes and group attributes an account stores.

One rules object per account (``GET``/``POST ingestion_filtering_rules``; a POST replaces it whole)::

    {"mode": "deny", "event_names": [...], "profile_attributes": [...], "group_attributes": [...]}

``deny`` drops the listed names; ``allow`` keeps only the listed names, an empty list keeping all
of its category. Names match exactly. They apply wherever data comes in — track, profile and group
PATCH, and the bulk imports — dropping silently: a dropped event is answered 200 like a stored one,
an import counts what it dropped in ``ingestions_filtered``. ``user_id``/``group_id`` are never
attributes here and ``appcues:*`` events are never filtered.

Reading the rules on every track would cost a query a request, so the server keeps each account's
compiled rules for ``settings.ingestion_rules_cache_seconds`` (``RulesCache``): a save takes effect
at once in the process that saved it, and within that many seconds in every other server process.
Import jobs read the rules afresh at the start of each attempt.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import select

from opencues import timestamps
from opencues.errors import bad_request, invalid_field
from opencues.storage import Database
from opencues.storage.schema import ingestion_rules

MODES = ("deny", "allow")
CATEGORIES = ("profile_attributes", "event_names", "group_attributes")
MAX_NAMES = 10_000  # per category: the rules are kept in every server process's memory
NEVER_FILTERED_PREFIX = "appcues:"
DEFAULT = {"mode": "deny", "profile_attributes": [], "event_names": [], "group_attributes": []}


@dataclass(frozen=True)
class Rules:
    """An account's rules, compiled for membership tests."""

    mode: str = "deny"
    event_names: frozenset = frozenset()
    profile_attributes: frozenset = frozenset()
    group_attributes: frozenset = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.event_names or self.profile_attributes or self.group_attributes)

    def keeps_event(self, name: str) -> bool:
        names = self.event_names
        if not names or name.startswith(NEVER_FILTERED_PREFIX):
            return True
        return (name in names) is (self.mode == "allow")

    def _filter(self, names: frozenset, attributes: dict) -> tuple[dict, int]:
        if not names:
            return attributes, 0
        keep = self.mode == "allow"
        kept = {key: value for key, value in attributes.items() if (key in names) is keep}
        return kept, len(attributes) - len(kept)

    def filter_profile(self, attributes: dict) -> tuple[dict, int]:
        """``(kept attributes, how many were dropped)``."""
        return self._filter(self.profile_attributes, attributes)

    def filter_group(self, attributes: dict) -> tuple[dict, int]:
        return self._filter(self.group_attributes, attributes)

    def as_dict(self) -> dict:
        return {"mode": self.mode, **{c: sorted(getattr(self, c)) for c in CATEGORIES}}


NONE = Rules()


Name = Annotated[str, StringConstraints(min_length=1)]


class RulesBody(BaseModel):
    """The rules object: the body of a POST (it validates it) and of both responses."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # built at its first use, not at start
    mode: Literal["deny", "allow"] = Field("deny", description="`deny` drops the listed names; `allow` keeps only them")
    profile_attributes: list[Name] = Field(default_factory=list, max_length=MAX_NAMES, description="User profile attribute names")
    event_names: list[Name] = Field(default_factory=list, max_length=MAX_NAMES, description="Event names (`appcues:*` events are never filtered)")
    group_attributes: list[Name] = Field(default_factory=list, max_length=MAX_NAMES, description="Group property names")


def validate(body: Any) -> dict:
    """The rules object to save from a POST body (400 naming the bad field). Missing (or null)
    categories are empty and ``mode`` defaults to ``deny``; the lists keep their order, without
    repeats. An ``account_id`` in the body is ignored."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object of rules")
    fields = {k: v for k, v in body.items() if k != "account_id" and v is not None}
    try:
        rules = RulesBody.model_validate(fields, strict=True)
    except ValidationError as exc:
        raise invalid_field(exc) from None
    saved = rules.model_dump()
    for category in CATEGORIES:
        saved[category] = list(dict.fromkeys(saved[category]))
    return saved


def compile_rules(saved: dict | None) -> Rules:
    if not saved:
        return NONE
    return Rules(
        mode=saved.get("mode", "deny"),
        **{category: frozenset(saved.get(category) or ()) for category in CATEGORIES},
    )


def get(db: Database, account_id: str) -> dict:
    """The saved rules object (the empty deny set when none was ever saved)."""
    with db.connect() as conn:
        saved = conn.execute(select(ingestion_rules.c.rules).where(ingestion_rules.c.account_id == account_id)).scalar()
    return {**DEFAULT, **(saved or {})}


def load(db: Database, account_id: str) -> Rules:
    """The account's compiled rules, read now."""
    return compile_rules(get(db, account_id))


def replace(db: Database, account_id: str, body: Any) -> dict:
    """Validate and save a whole new rules object (no merge); return it."""
    saved = validate(body)
    now = timestamps.now_ms()
    statement = db.insert(ingestion_rules).values(account_id=account_id, rules=saved, version=1, updated_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=[ingestion_rules.c.account_id],
        set_={"rules": saved, "version": ingestion_rules.c.version + 1, "updated_at": now},
    )
    with db.begin() as conn:
        conn.execute(statement)
    return saved


class RulesCache:
    """Compiled rules per account, each kept ``ttl`` seconds (see the module docstring)."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Rules]] = {}
        self._lock = threading.Lock()

    def rules(self, db: Database, account_id: str) -> Rules:
        entry = self._entries.get(account_id)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        rules = load(db, account_id)
        with self._lock:
            self._entries[account_id] = (now + self.ttl, rules)
        return rules

    def forget(self, account_id: str) -> None:
        """Drop an account's entry (after this process saved new rules for it)."""
        with self._lock:
            self._entries.pop(account_id, None)
