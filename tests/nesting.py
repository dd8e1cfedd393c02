"""Deeply nested JSON for the hostile-input tests of every path in (track, PATCH, imports)."""

import orjson


def nested_json(depth: int) -> str:
    """JSON text of a value nesting ``depth`` arrays and objects (alternating) around a number
    (written by hand: ``json``/``orjson`` cannot write some of the depths tested)."""
    text = "1"
    for level in range(depth):
        text = '{"k":' + text + "}" if level % 2 else "[" + text + "]"
    return text


def nested(depth: int):
    return orjson.loads(nested_json(depth))
