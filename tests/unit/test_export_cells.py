"""CSV cells rendered in Python from the database's JSON rows (``opencues.export_cells``). That
they match the database's own cells byte for byte is checked against both databases in
``test_exports.py``; here, the renderer's own rules on rows no database produced."""

from opencues.export_cells import CellRenderer

COLUMNS = [
    ("attributes.a", [("a",)]),
    ("attributes.a.b", [("a", "b"), ("a.b",)]),  # two paths, one name: the first that is not null
    ("attributes.n", [("n",)]),
]


def test_number_text_is_kept_as_the_database_wrote_it():
    line = '["ev", "t", "u", {"n": 2.50, "a": [1e20, -0, {"k": 100000000000000000000}]}]'
    assert CellRenderer(COLUMNS, "postgresql").row(line) == ["ev", "t", "u", '[1e20, -0, {"k": 100000000000000000000}]', None, "2.50"]
    assert CellRenderer(COLUMNS, "sqlite").row(line)[3] == '[1e20,-0,{"k":100000000000000000000}]'


def test_strings_booleans_integers_and_empty_cells():
    line = '["ev", null, "u", {"a": {"b": true}, "a.b": "later", "n": -7, "other": 1.5}]'
    assert CellRenderer(COLUMNS, "sqlite").row(line) == ["ev", None, "u", None, "true", "-7"]
    line = '["ev", "t", "u", {"a": {"b": null}, "a.b": "x\\u0000y", "n": {"deep": 1}}]'
    assert CellRenderer(COLUMNS, "sqlite").row(line) == ["ev", "t", "u", None, "x\x00y", None]
    line = '["ev", "t", "u", {"a": {"b": ""}, "a.b": "second"}]'  # "" is not null: the first path wins
    assert CellRenderer(COLUMNS, "sqlite").row(line) == ["ev", "t", "u", None, "", None]


def test_strings_inside_arrays_are_escaped_as_the_databases_escape_them():
    line = '["ev", "t", "u", {"a": ["q\\"\\\\\\n\\u001f\\u007f é", true, null]}]'
    assert CellRenderer(COLUMNS, "postgresql").row(line)[3] == '["q\\"\\\\\\n\\u001f\x7f é", true, null]'
