"""The schema revision this code migrates to, read without importing Alembic.

Alembic (~0.3–0.9 s to import) is needed to *change* a schema, not to see that a database is
already current. ``head_revision()`` reads ``revision``/``down_revision`` from their lines in the
migration files (about a millisecond; ``ast`` for a value spread over lines), so a start against
a current database — every start but the first, and every ``serve --test`` start from the schema
template — never loads it. A test checks it agrees with Alembic's own ``ScriptDirectory``.
"""

from __future__ import annotations

import ast
import hashlib
import re
from functools import lru_cache
from pathlib import Path

VERSIONS_DIR = Path(__file__).parent / "migrations" / "versions"

# ``revision = '0003'`` / ``down_revision: str | None = '0002'`` at the start of a line.
_ASSIGNMENT = re.compile(r"^(revision|down_revision)[ \t]*(?::[^=\n]*)?=[ \t]*(.+?)[ \t]*(?:#.*)?$", re.MULTILINE)


def _assignments(path: Path) -> dict:
    """``revision`` and ``down_revision`` of a migration file, read from those lines alone: parsing
    every migration file whole cost each start ~7 ms (with ten of them). A value these lines do
    not hold (one spread over lines): the file parsed whole."""
    try:
        return {name: ast.literal_eval(value) for name, value in _ASSIGNMENT.findall(path.read_text())}
    except (ValueError, SyntaxError):
        return _parsed_assignments(path)


def _parsed_assignments(path: Path) -> dict:
    found = {}
    for node in ast.parse(path.read_bytes(), str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("revision", "down_revision"):
                found[name] = ast.literal_eval(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            if node.target.id in ("revision", "down_revision"):
                found[node.target.id] = ast.literal_eval(node.value)
    return found


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The one revision no other migration revises (more than one head: a ``RuntimeError``)."""
    revisions, revised = set(), set()
    for path in VERSIONS_DIR.glob("*.py"):
        found = _assignments(path)
        if "revision" not in found:
            continue
        revisions.add(found["revision"])
        down = found.get("down_revision")
        revised.update(down if isinstance(down, (tuple, list)) else [down] if down else [])
    heads = revisions - revised
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads ({', '.join(sorted(heads))}); expected one")
    return heads.pop()


@lru_cache(maxsize=1)
def migrations_fingerprint() -> str:
    """A digest of every migration file: it changes whenever a migration is added or edited, so a
    schema built from them (the ``serve --test`` template) is never reused after a change."""
    digest = hashlib.sha256()
    for path in sorted(VERSIONS_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]
