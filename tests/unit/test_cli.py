"""The command-line contract other tools depend on: exact command names, flags and JSON shapes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from opencues import accounts
from opencues.cli import main
from tests.conftest import AccountClient, Credentials, assert_problem


@pytest.fixture(autouse=True)
def _restore_group_environment(monkeypatch):
    """The group exports --data-dir/--database-url to os.environ (for server processes): undo it
    after each test, so a test's bad URL never reaches the next test."""
    import os

    for name in ("OPENCUES_DATA_DIR", "OPENCUES_DATABASE_URL"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cli(settings, db):
    """Run ``opencues ARGS`` against the test database; returns the click Result (exit code 0 checked
    unless ``ok=False``)."""
    runner = CliRunner()
    env = {"OPENCUES_DATA_DIR": str(settings.data_dir), "OPENCUES_DATABASE_URL": settings.database_url}

    def run(*args: str, ok: bool = True, **extra_env: str):
        result = runner.invoke(main, list(args), env={**env, **extra_env})
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    return run


def _json(result):
    return json.loads(result.stdout)


def test_accounts_create_json_shape(cli, db):
    created = _json(cli("accounts", "create", "--id", "acme", "--name", "Acme Inc", "--json"))
    assert created == {"id": "acme", "name": "Acme Inc"}
    assert accounts.get_account(db, "acme") == created


def test_accounts_create_generates_an_id(cli):
    created = _json(cli("accounts", "create", "--json"))
    assert set(created) == {"id", "name"} and created["id"]


def test_accounts_create_twice_is_a_clean_error(cli):
    cli("accounts", "create", "--id", "acme")
    result = cli("accounts", "create", "--id", "acme", ok=False)
    assert result.exit_code == 1
    assert "already exists" in result.output and "Traceback" not in result.output


def test_keys_create_json_shape_and_the_key_works(cli, client):
    cli("accounts", "create", "--id", "acme")
    created = _json(cli("keys", "create", "--account", "acme", "--json"))
    assert set(created) == {"key", "secret", "account_id"} and created["account_id"] == "acme"
    response = client.get("/v2/accounts/acme/flows", auth=(created["key"], created["secret"]))
    assert response.status_code == 200


def test_keys_create_read_only(cli, client):
    cli("accounts", "create", "--id", "acme")
    cli("flows", "create", "--account", "acme", "--name", "Tour", "--id", "tour")
    created = _json(cli("keys", "create", "--account", "acme", "--read-only", "--json"))
    auth = (created["key"], created["secret"])
    assert client.get("/v2/accounts/acme/flows/tour", auth=auth).status_code == 200
    assert_problem(client.post("/v2/accounts/acme/flows/tour/publish", auth=auth), 403, "read-only")


def test_keys_create_for_an_unknown_account_fails(cli):
    result = cli("keys", "create", "--account", "nobody", "--json", ok=False)
    assert result.exit_code == 1 and "nobody" in result.output


def test_keys_list_never_shows_secrets(cli):
    cli("accounts", "create", "--id", "acme")
    first = _json(cli("keys", "create", "--account", "acme", "--json"))
    second = _json(cli("keys", "create", "--account", "acme", "--read-only", "--json"))
    listed = _json(cli("keys", "list", "--account", "acme", "--json"))
    assert [k["key"] for k in listed] == [first["key"], second["key"]]
    assert [k["read_only"] for k in listed] == [False, True]
    text = cli("keys", "list", "--account", "acme").output
    assert first["key"] in text and second["key"] in text
    assert first["secret"] not in text + json.dumps(listed)


def test_keys_revoke_then_the_key_gets_401(cli, client):
    cli("accounts", "create", "--id", "acme")
    created = _json(cli("keys", "create", "--account", "acme", "--json"))
    auth = (created["key"], created["secret"])
    assert client.get("/v2/accounts/acme/flows", auth=auth).status_code == 200
    cli("keys", "revoke", created["key"])
    assert_problem(client.get("/v2/accounts/acme/flows", auth=auth), 401)
    assert _json(cli("keys", "list", "--account", "acme", "--json"))[0]["revoked"] is True
    again = cli("keys", "revoke", created["key"], ok=False)
    assert again.exit_code == 1 and created["key"] in again.output


def test_flows_create_prints_the_flow_as_the_api_shows_it(cli, client):
    cli("accounts", "create", "--id", "acme")
    key = _json(cli("keys", "create", "--account", "acme", "--json"))
    printed = _json(
        cli("flows", "create", "--account", "acme", "--name", "Tour", "--id", "tour",
            "--frequency", "every_time", "--published", "--json")
    )  # fmt: skip
    api = AccountClient(client, Credentials("acme", key["key"], key["secret"]))
    shown = api.get("flows/tour").json()
    assert list(printed) == list(shown)
    assert {k: v for k, v in printed.items() if k != "url"} == {k: v for k, v in shown.items() if k != "url"}
    assert printed["url"].endswith("/v2/accounts/acme/flows/tour")
    assert printed["published"] is True and printed["frequency"] == "every_time"


def test_flows_urls_follow_the_public_url(cli, tmp_path):
    cli("accounts", "create", "--id", "acme")
    public = {"OPENCUES_PUBLIC_URL": "https://cues.example.com/"}
    flow = _json(cli("flows", "create", "--account", "acme", "--name", "T", "--id", "t 1", "--json", **public))
    assert flow["url"] == "https://cues.example.com/v2/accounts/acme/flows/t%201"
    path = tmp_path / "flows.json"
    path.write_text('[{"id": "f1", "name": "One"}]')
    [imported] = _json(cli("flows", "import", "--account", "acme", str(path), "--json", **public))
    assert imported["url"] == "https://cues.example.com/v2/accounts/acme/flows/f1"


def test_flows_create_defaults(cli):
    cli("accounts", "create", "--id", "acme")
    flow = _json(cli("flows", "create", "--account", "acme", "--name", "Tour", "--json"))
    assert flow["id"] and flow["frequency"] == "once" and flow["published"] is False and flow["published_at"] is None


def test_flows_create_refuses_a_bad_frequency(cli):
    cli("accounts", "create", "--id", "acme")
    result = cli("flows", "create", "--account", "acme", "--name", "Tour", "--frequency", "daily", ok=False)
    assert result.exit_code == 2 and "frequency" in result.output


def test_flows_create_for_an_unknown_account_fails(cli):
    result = cli("flows", "create", "--account", "nobody", "--name", "Tour", ok=False)
    assert result.exit_code == 1 and "nobody" in result.output


def test_flows_import(cli, tmp_path, db):
    cli("accounts", "create", "--id", "acme")
    path = tmp_path / "flows.json"
    path.write_text(json.dumps([{"id": "f1", "name": "One", "published": True}, {"id": "f2", "name": "Two"}]))
    assert "imported 2 flows" in cli("flows", "import", "--account", "acme", str(path)).output
    from opencues import flows

    assert [f["id"] for f in flows.list_flows(db, "acme")] == ["f1", "f2"]
    path.write_text('[{"id": "f3"}]')
    result = cli("flows", "import", "--account", "acme", str(path), ok=False)
    assert result.exit_code == 1 and "name" in result.output


def test_serve_options_are_the_contract(cli):
    text = cli("serve", "--help").output
    for option, default in (("--host", "127.0.0.1"), ("--port", "8000"), ("--workers", None), ("--demo", None)):
        assert option in text
        if default:
            assert default in text


@pytest.mark.parametrize(
    "command",
    [
        ["serve"], ["migrate"], ["worker"], ["accounts", "create"], ["keys", "create"], ["keys", "list"],
        ["keys", "revoke"], ["flows", "create"], ["flows", "import"],
    ],
)  # fmt: skip
def test_every_command_has_help(cli, command):
    assert "Usage:" in cli(*command, "--help").output


def test_the_database_url_flag_matches_the_environment(settings, db, monkeypatch):
    # `--database-url` on the group is the same setting as OPENCUES_DATABASE_URL, and wins over it.
    monkeypatch.setenv("OPENCUES_DATABASE_URL", "sqlite:////nonexistent/overridden-by-the-flag.db")
    monkeypatch.setenv("OPENCUES_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()
    result = runner.invoke(main, ["--database-url", settings.database_url, "accounts", "create", "--id", "flagged"])
    assert result.exit_code == 0, result.output
    assert accounts.get_account(db, "flagged")["id"] == "flagged"


def test_migrate(cli):
    assert "up to date" in cli("migrate").output


def _walk(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from _walk(command, (*path, name))


def test_every_command_and_option_has_help_naming_its_environment():
    import click

    for path, command in _walk(main):
        text = CliRunner().invoke(main, [*path, "--help"]).output
        assert command.help or command.short_help, f"`opencues {' '.join(path)}` has no help line"
        assert "OPENCUES_DATA_DIR" in text and "OPENCUES_DATABASE_URL" in text, path
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"`opencues {' '.join(path)} {param.opts[0]}` has no help"
    group_help = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    assert "env var: OPENCUES_DATA_DIR" in group_help and "env var: OPENCUES_DATABASE_URL" in group_help


def test_group_options_are_accepted_after_the_subcommand(settings, db, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["accounts", "create", "--id", "late", "--database-url", settings.database_url], env={})
    assert result.exit_code == 0, result.output
    assert accounts.get_account(db, "late")["id"] == "late"
    data_dir = tmp_path / "later"
    result = runner.invoke(main, ["migrate", f"--data-dir={data_dir}"], env={"OPENCUES_DATABASE_URL": None})
    assert result.exit_code == 0, result.output
    assert (data_dir / "opencues.db").exists()


def _one_line_failure(*args, **env):
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_unreachable_postgres_is_one_line_without_the_password():
    line = _one_line_failure("migrate", "--database-url", "postgresql://me:s3cret@127.0.0.1:1/nothing")
    assert "cannot use the database" in line and "s3cret" not in line and "127.0.0.1" in line


def test_a_bad_database_url_is_one_line():
    assert "bad database URL" in _one_line_failure("migrate", "--database-url", "nosuchdb://x")


def test_an_unwritable_data_dir_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = _one_line_failure("migrate", OPENCUES_DATA_DIR=str(blocker / "data"), OPENCUES_DATABASE_URL=None)
    assert "cannot write" in line and "OPENCUES_DATA_DIR" in line


def test_a_malformed_rate_limit_is_one_line(settings):
    line = _one_line_failure("migrate", OPENCUES_RATE_LIMIT="lots", OPENCUES_DATABASE_URL=settings.database_url)
    assert "OPENCUES_RATE_LIMIT" in line and "lots" in line


def test_postgres_without_psycopg_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now fails
    for name in [m for m in sys.modules if m.startswith("sqlalchemy.dialects.postgresql.psycopg")]:
        monkeypatch.delitem(sys.modules, name)
    line = _one_line_failure("migrate", "--database-url", "postgresql://127.0.0.1:1/x")
    assert "opencues[postgres]" in line


def test_no_traceback_from_a_real_process(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "opencues", "migrate", "--database-url", "postgresql://u:pw@127.0.0.1:1/x"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr


def test_connections_accepted_on_the_handed_over_socket_have_nagle_off():
    """``serve --demo`` and ``--port 0`` hand uvicorn a bound socket, which it wraps as AF_UNIX:
    asyncio then leaves Nagle's algorithm on for each connection (~40 ms a request, waiting for
    delayed ACKs). The listening socket carries TCP_NODELAY, which its connections inherit."""
    import socket

    from opencues.cli import _listen

    listening = _listen("127.0.0.1", 0)
    as_uvicorn_sees_it = socket.fromfd(listening.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with socket.create_connection(listening.getsockname(), timeout=5):
            accepted, _ = as_uvicorn_sees_it.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        as_uvicorn_sees_it.close()
        listening.close()


def test_flows_create_offers_the_librarys_frequencies():
    from opencues import cli, flows

    assert cli.FLOW_FREQUENCIES == flows.FREQUENCIES
