"""The README must stay true: these tests fail when it falls behind the code."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from opencues.cli import main
from opencues.settings import Settings
from opencues.web.routes import ROUTES

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
FLAGS = {"data_dir": "--data-dir", "database_url": "--database-url"}


def _table_rows(first_cell: re.Pattern) -> list[list[str]]:
    """Markdown table rows of the README whose first cell matches ``first_cell``."""
    rows = []
    for line in README.splitlines():
        if line.startswith("|") and line.rstrip().endswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            if first_cell.fullmatch(cells[0]):
                rows.append(cells)
    return rows


def _code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`]*)`", text)


def _rendered_default(value) -> str:
    if isinstance(value, Path):
        return f"./{value}"
    return str(value)


CONFIG_ROWS = {row[0].strip("`"): row for row in _table_rows(re.compile(r"`OPENCUES_[A-Z0-9_]+`"))}


def test_config_table_lists_exactly_the_settings():
    expected = {f"OPENCUES_{name.upper()}" for name in Settings.model_fields}
    assert set(CONFIG_ROWS) == expected, "README configuration table and opencues.settings.Settings differ"


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_config_row_matches_the_setting(name):
    field = Settings.model_fields[name]
    row = CONFIG_ROWS.get(f"OPENCUES_{name.upper()}")
    assert row is not None, f"OPENCUES_{name.upper()} is missing from the README configuration table"
    env, flag, default, description = row
    assert field.description, f"setting {name} has no description"
    assert description == field.description, f"README description of {env} differs from Settings"
    if field.default is None:
        assert default == "unset", f"{env}: default should read 'unset'"
    else:
        spans = _code_spans(default)
        assert spans and spans[0] == _rendered_default(field.default), f"{env}: default should be `{field.default}`"
    assert flag == (f"`{FLAGS[name]}`" if name in FLAGS else "—"), f"{env}: flag column"


def _all_options(group: click.Group, prefix=()) -> dict[tuple[str, ...], click.Command]:
    commands = {}
    for name, command in group.commands.items():
        path = (*prefix, name)
        if isinstance(command, click.Group):
            commands.update(_all_options(command, path))
        else:
            commands[path] = command
    return commands


def test_config_flags_exist_on_the_command_line():
    group_flags = {opt for param in main.params for opt in getattr(param, "opts", [])}
    assert set(FLAGS.values()) <= group_flags


COMMANDS = _all_options(main)


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_command_and_its_options_are_in_the_readme(path):
    command = COMMANDS[path]
    rows = [row for row in _table_rows(re.compile(r"`opencues .*`")) if row[0].startswith(f"`opencues {' '.join(path)}")]
    assert rows, f"`opencues {' '.join(path)}` is missing from the README command table"
    usage = rows[0][0]
    for param in command.params:
        if isinstance(param, click.Option) and "--help" not in param.opts:
            assert any(opt in usage for opt in param.opts), f"{param.opts[0]} of opencues {' '.join(path)}"
        elif isinstance(param, click.Argument):
            assert param.name.upper() in usage, f"argument {param.name} of opencues {' '.join(path)}"


def test_the_command_contract_is_documented():
    # The exact names other tools depend on (issue 2).
    for text in (
        "opencues serve [--host 127.0.0.1] [--port 8000] [--workers N] [--demo]",
        "opencues accounts create [--id ID] [--name NAME] [--json]",
        "opencues keys create --account ID [--read-only] [--json]",
        "opencues keys list --account ID",
        "opencues keys revoke KEY",
        "opencues flows create --account ID --name NAME [--id ID] [--frequency once\\|every_time] [--published] [--json]",
        "opencues flows import --account ID FILE.json",
    ):
        assert text in README, text


def _normalise(path: str) -> str:
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def test_route_table_lists_exactly_the_routes():
    documented = {(row[0], row[1].strip("`")) for row in _table_rows(re.compile(r"GET|POST|PUT|PATCH|DELETE"))}
    actual = {(route.method, _normalise(route.path)) for route in ROUTES}
    assert documented - actual == set(), "README lists routes the server does not have"
    assert actual - documented == set(), "routes missing from the README's API table"


def test_quick_start_is_exactly_two_commands_and_the_tests_one():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```console\n(.*?)```", quick, re.S)
    assert blocks[0] == "pip install .\nopencues serve --demo\n"
    assert blocks[-1].splitlines()[-1] == "pytest"


def test_ci_runs_the_readmes_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\s*(exec\s+)?pytest\s*$", script, re.M), ".ci/run must run exactly `pytest`"
    assert "OPENCUES_REQUIRE_POSTGRES=1" in script and "OPENCUES_REQUIRE_REDIS=1" in script


def test_linked_documents_exist():
    for target in re.findall(r"\]\(([^)#:]+)\)", README):
        assert (ROOT / target).exists(), f"README links to missing {target}"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower-case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_decisions_index_lists_every_section():
    text = (ROOT / "docs" / "decisions.md").read_text()
    sections = re.findall(r"^## (.+)$", text, re.M)
    linked = re.findall(r"^- \[[^\]]+\]\(#([^)]+)\)", text, re.M)
    assert linked == [_anchor(s) for s in sections], "docs/decisions.md: the index must list every section, in order"
