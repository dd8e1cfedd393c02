"""Injected faults: make matching API requests fail, or answer late, on purpose.

A fault matches a request by ``path`` (a glob on the request path: ``*/segments*``) and, when
given, ``method`` and ``account_id``. It then waits ``delay_ms`` and, with a ``status``, answers
that status with a Problem Details body in the API's own shape (``Retry-After`` with a 429)
instead of running the request; with ``delay_ms`` alone the request then runs as usual.
``probability`` (0–1) makes it fire only sometimes; ``times`` limits it to the next N requests it
fires on, after which it is gone. Faults live in the database, so every server process obeys them;
they never apply to the control API itself.
"""

from __future__ import annotations

import fnmatch
import random
import re
import uuid
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, select, update

from opencues.errors import bad_request, not_found
from opencues.storage import Database
from opencues.storage.schema import control_faults
from opencues.timestamps import now_ms

FIELDS = ("method", "path", "account_id", "status", "detail", "retry_after", "delay_ms", "times", "probability")
MAX_DELAY_MS = 600_000


@dataclass(frozen=True)
class Fault:
    id: str
    method: str | None
    path: str
    account_id: str | None
    status: int | None
    detail: str | None
    retry_after: int | None
    delay_ms: int | None
    times_left: int | None
    probability: float | None

    def matches(self, method: str, path: str, account_id: str | None) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.account_id is not None and self.account_id != account_id:
            return False
        return _glob(self.path).fullmatch(path) is not None

    def as_dict(self) -> dict:
        return {
            "id": self.id, "method": self.method, "path": self.path, "account_id": self.account_id,
            "status": self.status, "detail": self.detail, "retry_after": self.retry_after,
            "delay_ms": self.delay_ms, "times": self.times_left, "probability": self.probability,
        }  # fmt: skip


_GLOBS: dict[str, re.Pattern] = {}


def _glob(pattern: str) -> re.Pattern:
    compiled = _GLOBS.get(pattern)
    if compiled is None:
        compiled = _GLOBS[pattern] = re.compile(fnmatch.translate(pattern))
    return compiled


def _int(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad_request(f"`{name}` must be an integer from {low} to {high}")
    return value


def validate(body) -> dict:
    """The columns of a new fault from a request body; a 400 naming the field otherwise."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object with at least `path`")
    for key in body:
        if key not in FIELDS:
            raise bad_request(f"`{key}` is not a fault field; expected one of {', '.join(FIELDS)}")
    path = body.get("path")
    if not isinstance(path, str) or not path:
        raise bad_request("`path` is required: a glob on the request path, e.g. `*/segments*`")
    method = body.get("method")
    if method is not None and (not isinstance(method, str) or not method.isalpha()):
        raise bad_request("`method` must be an HTTP method such as `POST`")
    for name in ("account_id", "detail"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise bad_request(f"`{name}` must be a string")
    status = _int(body, "status", 400, 599)
    delay_ms = _int(body, "delay_ms", 0, MAX_DELAY_MS)
    if status is None and not delay_ms:
        raise bad_request("a fault needs a `status` (400–599) to answer, a `delay_ms` to wait, or both")
    probability = body.get("probability")
    if probability is not None and (
        not isinstance(probability, (int, float)) or isinstance(probability, bool) or not 0 <= probability <= 1
    ):
        raise bad_request("`probability` must be a number from 0 to 1")
    return {
        "method": method.upper() if method else None,
        "path": path,
        "account_id": body.get("account_id"),
        "status": status,
        "detail": body.get("detail"),
        "retry_after": _int(body, "retry_after", 0, 86_400),
        "delay_ms": delay_ms,
        "times_left": _int(body, "times", 1, 1_000_000_000),
        "probability": float(probability) if probability is not None else None,
    }


def add_fault(db: Database, body) -> dict:
    values = validate(body)
    fault_id = uuid.uuid4().hex[:16]
    with db.begin() as conn:
        conn.execute(control_faults.insert().values(id=fault_id, created_at=now_ms(), **values))
    return Fault(id=fault_id, **values).as_dict()


_ALL = select(
    control_faults.c.id, control_faults.c.method, control_faults.c.path, control_faults.c.account_id,
    control_faults.c.status, control_faults.c.detail, control_faults.c.retry_after, control_faults.c.delay_ms,
    control_faults.c.times_left, control_faults.c.probability,
).where(control_faults.c.created_at >= bindparam("since")).order_by(control_faults.c.created_at, control_faults.c.id)  # fmt: skip


def active_faults(db: Database) -> list[Fault]:
    """Every fault, oldest first (the first matching one applies). One indexed read on the hot path."""
    return [Fault(*row) for row in db.direct.fetch_all(_ALL, {"since": 0})]


def list_faults(db: Database) -> list[dict]:
    return [fault.as_dict() for fault in active_faults(db)]


def remove_fault(db: Database, fault_id: str) -> None:
    with db.begin() as conn:
        if conn.execute(delete(control_faults).where(control_faults.c.id == fault_id)).rowcount == 0:
            raise not_found(f"fault {fault_id!r}")


def clear_faults(db: Database) -> int:
    with db.begin() as conn:
        return conn.execute(delete(control_faults)).rowcount


def candidates(db: Database, method: str, path: str, account_id: str | None) -> list[Fault]:
    """The faults that would fire on this request, in order (``probability`` drawn; ``times``
    not yet spent: the first one that ``spend`` grants applies)."""
    return [
        fault
        for fault in active_faults(db)
        if fault.matches(method, path, account_id) and (fault.probability is None or random.random() < fault.probability)
    ]


def fire(db: Database, method: str, path: str, account_id: str | None) -> Fault | None:
    """The fault that applies to this request, if any — spending one of its ``times``."""
    for fault in candidates(db, method, path, account_id):
        if fault.times_left is None or spend(db, fault.id):
            return fault
    return None


def spend(db: Database, fault_id: str) -> bool:
    """Take one of the fault's remaining uses (atomically: several processes may race); the last
    use removes it."""
    with db.begin() as conn:
        spent = conn.execute(
            update(control_faults)
            .where(control_faults.c.id == fault_id, control_faults.c.times_left > 0)
            .values(times_left=control_faults.c.times_left - 1)
        ).rowcount
        conn.execute(delete(control_faults).where(control_faults.c.id == fault_id, control_faults.c.times_left <= 0))
    return spent == 1
