"""What a stored attributes document may hold: one rule for an event's attributes and for a
profile update, on every path in (track, profile PATCH, event and profile imports).

- **Nesting**: an attribute's value nests at most ``MAX_DEPTH`` (64) levels of objects and arrays.
  The JSON encoder cannot write a document nested more than 254 levels, and PostgreSQL's JSONB
  and SQLite's JSON functions have limits of their own; one limit well below all of them keeps a
  deep value a 400 (or a failed row) on both databases instead of a 500 or a failed import job.
- **Size**: at most ``settings.max_attribute_keys`` object keys, counted at every depth (nested
  objects and objects inside arrays too). Every key costs storage and indexing work (the
  attribute-key catalogue, JSONB's sorted keys), far beyond what its bytes cost to parse.
- **NUL** (U+0000) in no string, key or value, at any depth: PostgreSQL's text and JSONB cannot
  hold it, so it is refused on SQLite alike.

``problem`` returns the first breach as a phrase naming the field (``attributes.page.title``), or
None. Given the document's JSON text — which every writer produces anyway — it decides nearly
every document with three scans of that text in C, and walks the values only when a scan says
a limit might be reached.
"""

from __future__ import annotations

import orjson

MAX_DEPTH = 64


def encoded(document: dict, *, max_keys: int, where: str = "") -> tuple[bytes | None, str | None]:
    """``(document as JSON text, the first breach of the rules or None)``: every writer stores
    the text, and the text makes the check cheap (``problem``). The text is None only when the
    encoder cannot write the document (nested too deep), and the breach then names where."""
    try:
        text = orjson.dumps(document)
    except orjson.JSONEncodeError:  # nested beyond what the encoder writes: the walk names it
        text = None
    return text, problem(document, max_keys=max_keys, where=where, text=text)


def problem(document: dict, *, max_keys: int, where: str = "", text: bytes | None = None) -> str | None:
    """The first breach of the rules in ``document`` (an object), or None.

    ``where`` names the document in messages (``attributes``; "" for a profile, whose keys are
    top-level fields); ``text``, when given, is ``document`` as JSON (``orjson.dumps``).
    """
    if text is not None and plainly_allowed(text, max_keys):
        return None
    return _Walk(max_keys, where).container(document, (), 0)


def plainly_allowed(text: bytes, max_keys: int) -> bool:
    """True when a document's JSON text (``orjson.dumps``) shows, by scans in C alone, that the
    document breaks no rule; False means "walk it" (``problem``), not that it breaks one. Bulk
    writers call this first and ``problem`` only on a False."""
    # Each scan here is one C call, about 0.15 µs a row of an import: ``find`` rather than ``in``
    # (half the time in CPython 3.11), one ``translate`` rather than two counts.
    if text.find(b"\\u0000") >= 0:
        return False
    # A key is followed by a colon and a nested level opens with a bracket (and closes with
    # another), so a text shorter than a limit cannot reach it (most documents: no counting).
    size = len(text)
    return (size <= max_keys or text.count(b":") <= max_keys) and (
        size <= 2 * MAX_DEPTH or size - len(text.translate(None, b"{[")) <= MAX_DEPTH
    )


class _Walk:
    __slots__ = ("max_keys", "keys_left", "where")

    def __init__(self, max_keys: int, where: str):
        self.max_keys = self.keys_left = max_keys
        self.where = where

    def name(self, path: tuple) -> str:
        text = self.where
        for part in path:
            if type(part) is int:
                text += f"[{part}]"
            else:
                text = f"{text}.{part}" if text else part
        return text or "body"

    def container(self, value, path: tuple, level: int) -> str | None:
        """Check ``value`` (a dict or list) at nesting ``level`` (0: the document itself)."""
        if level > MAX_DEPTH:
            return f"`{self.name(path[:1])}` nests objects and arrays more than {MAX_DEPTH} levels deep"
        if type(value) is dict:
            self.keys_left -= len(value)
            if self.keys_left < 0:
                what = f"`{self.where}`" if self.where else "the body"
                return f"{what} has more than {self.max_keys} attribute keys (counted at every depth)"
            items = value.items()
        else:
            items = enumerate(value)
        for key, item in items:
            if type(key) is str and "\x00" in key:
                return f"attribute names must not contain NUL characters (in `{self.name(path)}`)"
            kind = type(item)
            if kind is str:
                if "\x00" in item:
                    return f"`{self.name(path + (key,))}` must not contain NUL characters"
            elif kind is dict or kind is list:
                found = self.container(item, path + (key,), level + 1)
                if found is not None:
                    return found
        return None
