"""The rules on stored attribute documents: nesting, key count, NUL — and the shortcut through the
document's JSON text never hides a breach."""

from __future__ import annotations

import random

import orjson
import pytest

from opencues import attributes


def nested(depth: int):
    """Arrays in arrays: nesting without keys."""
    value = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "document, found",
    [
        ({"a": nested(64)}, None),
        ({"a": 1, "b": nested(65)}, "`attributes.b` nests objects and arrays more than 64 levels deep"),
        ({"a": {"b": "x\x00"}}, "`attributes.a.b` must not contain NUL characters"),
        ({"a": [1, ["\x00"]]}, "`attributes.a[1][0]` must not contain NUL characters"),
        ({"a": [{"k\x00": 1}]}, "attribute names must not contain NUL characters (in `attributes.a[0]`)"),
        ({f"k{i}": {"x": 1} for i in range(3)}, "`attributes` has more than 5 attribute keys (counted at every depth)"),
        ({"a": [{"x": 1}], "b": {"c": 1, "d": 1}}, None),  # exactly 5 keys: a, x, b, c, d
        ({"\\u0000": "\\u0000"}, None),  # a backslash and "u0000": text, not NUL
    ],
)
def test_problem_names_the_first_breach(document, found):
    assert attributes.problem(document, max_keys=5, where="attributes") == found
    assert attributes.problem(document, max_keys=5, where="attributes", text=_text(document)) == found


def _text(document):
    try:
        return orjson.dumps(document)
    except orjson.JSONEncodeError:
        return None


def test_a_profile_names_its_top_level_fields():
    assert attributes.problem({"deep": nested(70)}, max_keys=10) == "`deep` nests objects and arrays more than 64 levels deep"
    assert attributes.problem({"a": 1, "b": 2}, max_keys=1) == "the body has more than 1 attribute keys (counted at every depth)"


def random_value(rng: random.Random, depth: int, start: int):
    """Up to 4 children near the top; below that, chains (one child) that often run deep."""
    bushy = depth - start < 3
    if depth > 70 or rng.random() < (0.3 if bushy else 0.05):
        return rng.choice([1, 2.5, None, True, "text", "a:b{[", "\\u0000", "nul\x00" if rng.random() < 0.05 else "x"])
    count = rng.randint(0, 4) if bushy else 1
    if rng.random() < 0.5:
        return {rng.choice("abcdef:{[") + str(i): random_value(rng, depth + 1, start) for i in range(count)}
    return [random_value(rng, depth + 1, start) for _ in range(count)]


def test_the_text_shortcut_agrees_with_the_walk_on_random_documents():
    rng = random.Random(9)
    verdicts = set()
    for _ in range(3000):
        start = rng.choice([0, 40, 60])
        document = {"v": random_value(rng, 0, 0), "w": random_value(rng, start, start)}
        max_keys = rng.choice([1, 5, 20, 1000])
        walked = attributes.problem(document, max_keys=max_keys, where="attributes")
        assert attributes.problem(document, max_keys=max_keys, where="attributes", text=_text(document)) == walked
        verdicts.add(walked.split()[-1] if walked else None)
        # The bulk writers' shortcut: "plainly allowed" is never said of a document that breaks a rule.
        if _text(document) is not None and attributes.plainly_allowed(_text(document), max_keys):
            assert walked is None
    assert len(verdicts) >= 3  # the documents did breach the rules in several ways, and not always
