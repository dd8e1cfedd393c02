"""The ``opencues`` command: a thin shell over the library modules.

Every command reads the same configuration (environment ``OPENCUES_*``, or the group's
``--data-dir`` / ``--database-url`` flags), so ``keys create`` run beside ``serve`` writes to the
database the server reads.

Each command imports the library modules it uses when it runs, not this module: ``opencues api …``
only talks HTTP, and loading the settings, SQLAlchemy and the storage layer for it cost ~0.3 s
of CPU a command (docs/decisions.md, "The processes the tests start").
"""

from __future__ import annotations

import gc
import json
import os
import sys

import click

from opencues.errors import ApiError

DEMO_ACCOUNT = "demo"
# opencues.flows.FREQUENCIES (a unit test keeps them equal): importing that module here would load
# SQLAlchemy for every command.
FLOW_FREQUENCIES = ("once", "every_time")


def _emit(payload, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(payload))
    elif isinstance(payload, list):
        for item in payload:
            click.echo("  ".join(f"{k}={v}" for k, v in item.items()))
    else:
        for key, value in payload.items():
            click.echo(f"{key}: {value}")


def _db(ctx: click.Context):
    if "db" not in ctx.obj:
        from opencues.storage import open_database

        ctx.obj["db"] = open_database(ctx.obj["settings"])
        ctx.find_root().call_on_close(ctx.obj["db"].dispose)  # no pooled connections left behind
    return ctx.obj["db"]


def _file_store(ctx: click.Context):
    """Where uploaded payloads live (snapshots carry those of waiting jobs)."""
    from opencues.filestore import open_file_store

    return open_file_store(ctx.obj["settings"])


def _with_url(ctx: click.Context, account_id: str, flow: dict) -> dict:
    """The flow as the API shows it, ``url`` included: under OPENCUES_PUBLIC_URL when set, else
    under ``serve``'s default address (the CLI cannot know where a server listens)."""
    from urllib.parse import quote

    from opencues import flows

    base = (ctx.obj["settings"].public_url or "http://127.0.0.1:8000").rstrip("/")
    url = f"{base}/v2/accounts/{quote(account_id, safe='')}/flows/{quote(flow['id'], safe='')}"
    shown = {name: flow[name] for name in flows.COLUMNS}
    return {**shown, "url": url, **{name: flow[name] for name in flows.TAG_COLUMNS}}


class _ApiErrorsAsClickErrors(click.Group):
    """Errors a user can cause by configuration or input are one line on stderr, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            raise click.ClickException(exc.detail) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own (--help, ctx.exit): _one_line_error would load pydantic and SQLAlchemy
        except Exception as exc:  # noqa: BLE001 - only the known kinds below; anything else propagates
            message = _one_line_error(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, _group_options_first(args))


GROUP_OPTIONS = ("--data-dir", "--database-url")


def _group_options_first(args: list[str]) -> list[str]:
    """Accept ``opencues serve --data-dir X`` as ``opencues --data-dir X serve``."""
    moved, rest = [], []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        if arg in GROUP_OPTIONS and index + 1 < len(args):
            moved += [arg, args[index + 1]]
            index += 2
            continue
        if arg.split("=", 1)[0] in GROUP_OPTIONS and "=" in arg:
            moved.append(arg)
        else:
            rest.append(arg)
        index += 1
    return moved + rest


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL: show none of it
        return "(unparsable URL)"


def _one_line_error(exc: Exception) -> str | None:
    """The message for a configuration or environment problem, or None for a real bug."""
    from pydantic import ValidationError
    from sqlalchemy import exc as sa_exc

    from opencues.settings import ConfigurationError

    if isinstance(exc, ConfigurationError):
        return str(exc)
    if isinstance(exc, ValidationError):
        problems = [f"OPENCUES_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        return "invalid setting " + "; ".join(problems).replace("Value error, ", "")
    url = os.environ.get("OPENCUES_DATABASE_URL")
    if isinstance(exc, (sa_exc.ArgumentError, sa_exc.NoSuchModuleError)):
        return f"bad database URL {_safe_url(url) if url else ''}: {str(exc).splitlines()[0]}".replace("URL :", "URL:")
    if isinstance(exc, sa_exc.OperationalError):
        where = _safe_url(url) if url else "the SQLite database in the data dir"
        reason = str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc).strip() else type(exc).__name__
        return f"cannot use the database ({where}): {reason}"
    if isinstance(exc, OSError) and exc.filename:
        return f"cannot write {exc.filename}: {exc.strerror} (check --data-dir / OPENCUES_DATA_DIR)"
    return None


@click.group(cls=_ApiErrorsAsClickErrors)
@click.option("--data-dir", envvar="OPENCUES_DATA_DIR", show_envvar=True, help="Data directory (default ./opencues-data).")
@click.option("--database-url", envvar="OPENCUES_DATABASE_URL", show_envvar=True, help="Database URL (postgresql://… selects PostgreSQL).")
@click.version_option(package_name="opencues")
@click.pass_context
def main(ctx: click.Context, data_dir: str | None, database_url: str | None):
    """opencues: a self-hostable Appcues Public API v2 server."""
    # Export flags to the environment so server worker processes read the same configuration.
    if data_dir:
        os.environ["OPENCUES_DATA_DIR"] = data_dir
    if database_url:
        os.environ["OPENCUES_DATABASE_URL"] = database_url
    ctx.ensure_object(dict)
    if ctx.invoked_subcommand != "api":  # configured by its own options (APPCUES_*), not OPENCUES_*
        from opencues.settings import load_settings

        ctx.obj["settings"] = load_settings()
    if ctx.invoked_subcommand not in ("serve", "worker"):
        gc.enable()  # off while the command started (opencues.__main__); serve and worker: once started


@main.command()
@click.pass_context
def migrate(ctx):
    """Create or upgrade the database schema (every command also does this on start)."""
    _db(ctx)
    click.echo("database is up to date")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on (0: any free port, printed).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1), help="Server processes.")
@click.option("--demo", is_flag=True, help="Create a demo account with sample content and print a working key.")
@click.option("--test", "test_mode", is_flag=True, help="Test harness: control API and journal on, ephemeral data dir.")
@click.option("--seed", "seed_file", type=click.Path(exists=True, dir_okay=False), help="Load a snapshot file on start.")
@click.pass_context
def serve(ctx, host: str, port: int, workers: int, demo: bool, test_mode: bool, seed_file: str | None):
    """Run the API server.

    ``--test`` turns the control API on (with OPENCUES_ADMIN_TOKEN, or a generated token printed
    as ``admin token: …``), records the request journal, and keeps data in a temporary directory
    removed on exit unless a data dir is given.
    """
    import uvicorn

    from opencues import logs
    from opencues.web.server import uvicorn_options

    ephemeral = _enter_test_mode(ctx) if test_mode else None
    if ephemeral:
        import signal

        # uvicorn re-raises the SIGTERM it stopped on, once it has restored the handler it found:
        # with this one, the process unwinds (removing the temporary data dir) instead of dying.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings = ctx.obj["settings"]
    logs.configure(settings)
    metrics_dir = None
    try:
        db = _db(ctx)  # migrate once, before any server process starts
        if seed_file:
            from opencues import control

            loaded = control.seed(db, open(seed_file, "rb").read(), _file_store(ctx))
            click.echo(f"seeded {loaded['rows']} rows of {len(loaded['accounts'])} account(s) from {seed_file}")
        # Bound and listening before the demo line is printed: a client that runs it at once waits
        # in the backlog until the server accepts, instead of being refused (and with --port 0 the
        # line shows the real port).
        listening = _listen(host, port) if port == 0 or demo else None
        if demo:
            _print_demo(db, host, listening.getsockname()[1] if listening else port)
        db.dispose()
        metrics_dir = _multiprocess_metrics_dir(settings, workers)
        if workers != 1:
            gc.enable()  # this process only supervises; each server process starts its own
        sys.stdout.flush()
        uvicorn.run(
            "opencues.web.app:app_factory",
            factory=True,
            host=host,
            port=port,
            fd=listening.fileno() if listening else None,
            workers=workers,
            **{
                **uvicorn_options(None),  # each server process reads its limits from the environment
                "log_config": None,  # opencues.logs formats every line (each server process configures it)
                "log_level": "warning" if test_mode else settings.log_level.lower(),
                "access_log": False,  # opencues.web.observe writes the access log, with request ids
                "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
            },
        )
    finally:
        import shutil

        for directory in (ephemeral, metrics_dir):
            if directory:
                shutil.rmtree(directory, ignore_errors=True)


def _exit_on_sigterm(_signum, _frame):
    raise SystemExit(0)


def _enter_test_mode(ctx) -> str | None:
    """Configure ``serve --test`` through the environment (server processes read it); returns
    the temporary data dir to remove at exit, if one was made."""
    import secrets
    import tempfile

    from opencues.settings import load_settings

    ephemeral = None
    if not os.environ.get("OPENCUES_DATA_DIR"):
        ephemeral = tempfile.mkdtemp(prefix="opencues-test-")
        os.environ["OPENCUES_DATA_DIR"] = ephemeral
        if not os.environ.get("OPENCUES_DATABASE_URL"):
            from pathlib import Path

            from opencues.storage import sqlite_template

            # A copy of the cached, migrated schema: no migration (nor Alembic) on this start.
            sqlite_template.create_from_template(Path(ephemeral))
    if not os.environ.get("OPENCUES_ADMIN_TOKEN"):
        os.environ["OPENCUES_ADMIN_TOKEN"] = secrets.token_urlsafe(24)
        click.echo(f"admin token: {os.environ['OPENCUES_ADMIN_TOKEN']}")
    os.environ["OPENCUES_JOURNAL"] = "on"
    ctx.obj["settings"] = load_settings()
    return ephemeral


def _listen(host: str, port: int):
    """A listening socket on ``host:port`` (``0``: a port the OS picks), handed to uvicorn."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # uvicorn wraps a socket handed over by ``fd`` as AF_UNIX, so asyncio does not turn Nagle's
    # algorithm off on the connections it accepts: a response written in two parts then waited
    # for the client's delayed ACK, ~40 ms a request (track: 362 req/s against 2,657 without
    # --demo). Accepted connections inherit this option from the listening socket.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's backlog
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)  # uvicorn's worker processes listen on it too
    return sock


def _multiprocess_metrics_dir(settings, workers: int) -> str | None:
    """Several server processes: their metrics go to files in a directory of this run (see
    opencues.metrics), removed when ``serve`` exits. A directory the operator set is used as is."""
    if not settings.metrics or workers == 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    import tempfile

    directory = tempfile.mkdtemp(prefix="opencues-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


def _print_demo(db, host: str, port: int) -> None:
    from opencues import accounts, content, flows, tags

    try:
        accounts.get_account(db, DEMO_ACCOUNT)
    except ApiError:
        accounts.create_account(db, DEMO_ACCOUNT, "Demo account")
        flows.create_flow(db, DEMO_ACCOUNT, "Welcome tour", flow_id="flow1", frequency="once", published=True)
        flows.create_flow(db, DEMO_ACCOUNT, "Feature announcement", flow_id="flow2", frequency="every_time")
    if not tags.list_tags(db, DEMO_ACCOUNT):
        # Tags and one object of every experience type; also for a demo account made before they existed.
        content.import_content(db, DEMO_ACCOUNT, content.demo_content())
    key = accounts.create_key(db, DEMO_ACCOUNT)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown_host}:{port}"
    click.echo("opencues demo account")
    click.echo(f"  account id: {DEMO_ACCOUNT}")
    click.echo(f"  API key:    {key['key']}")
    click.echo(f"  API secret: {key['secret']}")
    click.echo("try:")
    click.echo(f"  curl -u {key['key']}:{key['secret']} {base}/v2/accounts/{DEMO_ACCOUNT}/flows")
    sys.stdout.flush()


@main.command()
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1), help="Jobs run concurrently.")
@click.option("--name", help="Worker name shown in logs and lease owners (default: host:pid).")
@click.pass_context
def worker(ctx, threads: int, name: str | None):
    """Run job workers (imports, segment uploads, exports) against the configured database.

    Start any number of these, on any number of machines sharing the database; each job is run by
    one worker at a time. SIGTERM/Ctrl-C: stop claiming, release the running job at its next batch
    (another worker resumes it) and exit.
    """
    import signal

    from opencues import logs
    from opencues.filestore import open_file_store
    from opencues.worker import WorkerPool

    settings = ctx.obj["settings"]
    logs.configure(settings)
    db = _db(ctx)
    if settings.metrics and settings.worker_metrics_port is not None:
        from prometheus_client import start_http_server

        from opencues import metrics

        metrics.watch_pool(db.engine)
        start_http_server(settings.worker_metrics_port, registry=metrics.worker_registry(db))
    pool = WorkerPool(db, open_file_store(settings), settings, threads, name=name)

    def stop(_signum, _frame):
        pool.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # As a server does (opencues.web.app._freeze_startup_objects): the start's objects out of the
    # collector's reach, then collections on (off since the start, under python -m opencues).
    gc.freeze()
    gc.enable()
    pool.start()
    click.echo(f"opencues worker: {threads} thread(s) running", err=True)
    while pool.alive():
        pool.stopping.wait(0.5)
        if pool.stopping.is_set():
            pool.stop()
    click.echo("opencues worker: stopped", err=True)


@main.group("accounts")
def accounts_group():
    """Manage accounts."""


@accounts_group.command("create")
@click.option("--id", "account_id", help="Account id (default: generated).")
@click.option("--name", help="Display name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def accounts_create(ctx, account_id, name, as_json):
    """Create an account."""
    from opencues import accounts

    _emit(accounts.create_account(_db(ctx), account_id, name), as_json)


@main.group("keys")
def keys_group():
    """Manage API keys."""


@keys_group.command("create")
@click.option("--account", "account_id", required=True, help="Account id.")
@click.option("--read-only", is_flag=True, help="The key may only read.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def keys_create(ctx, account_id, read_only, as_json):
    """Create an API key and print its secret (shown only this once)."""
    from opencues import accounts

    key = accounts.create_key(_db(ctx), account_id, read_only=read_only)
    _emit({"key": key["key"], "secret": key["secret"], "account_id": key["account_id"]}, as_json)


@keys_group.command("list")
@click.option("--account", "account_id", required=True, help="Account id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def keys_list(ctx, account_id, as_json):
    """List an account's API keys (never their secrets)."""
    from opencues import accounts

    _emit(accounts.list_keys(_db(ctx), account_id), as_json)


@keys_group.command("revoke")
@click.argument("key")
@click.pass_context
def keys_revoke(ctx, key):
    """Revoke KEY: its requests get 401 from now on."""
    from opencues import accounts

    accounts.revoke_key(_db(ctx), key)
    click.echo(f"revoked {key}")


@main.group("flows")
def flows_group():
    """Manage flows (the API can only read, publish and unpublish them)."""


@flows_group.command("create")
@click.option("--account", "account_id", required=True, help="Account id.")
@click.option("--name", required=True, help="Flow name.")
@click.option("--id", "flow_id", help="Flow id (default: a UUID).")
@click.option("--frequency", type=click.Choice(FLOW_FREQUENCIES), default="once", show_default=True, help="How often the flow shows.")
@click.option("--published", is_flag=True, help="Create it published.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def flows_create(ctx, account_id, name, flow_id, frequency, published, as_json):
    """Create a flow."""
    from opencues import accounts, flows

    db = _db(ctx)
    accounts.get_account(db, account_id)
    flow = flows.create_flow(db, account_id, name, flow_id=flow_id, frequency=frequency, published=published)
    _emit(_with_url(ctx, account_id, flow), as_json)


@flows_group.command("import")
@click.option("--account", "account_id", required=True, help="Account id.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def flows_import(ctx, account_id, file, as_json):
    """Create flows from FILE, a JSON array of flow objects."""
    from opencues import accounts, flows

    db = _db(ctx)
    accounts.get_account(db, account_id)
    imported = flows.import_flows(db, account_id, file)
    if as_json:
        _emit([_with_url(ctx, account_id, flow) for flow in imported], True)
    else:
        click.echo(f"imported {len(imported)} flows")


@main.group("content")
def content_group():
    """Load content: flows, tags and the experience types (the API only reads and publishes it)."""


@content_group.command("import")
@click.option("--account", "account_id", required=True, help="Account id.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.pass_context
def content_import(ctx, account_id, file, as_json):
    """Create or replace content from FILE.json: an object whose keys are resource names (flows,
    tags, checklists, pins, banners, launchpads, mobile, embeds, nps, flows-v2) and whose values
    are arrays of objects in that resource's API shape. Bad objects are reported, not fatal."""
    from opencues import content

    report = content.import_file(_db(ctx), account_id, file)
    if as_json:
        _emit(report, True)
    else:
        for resource, outcome in report.items():
            click.echo(
                f"{resource}: {outcome['created']} created, {outcome['replaced']} replaced, {outcome['failed']} failed"
            )
            for error in outcome["errors"]:
                click.echo(f"  [{error['index']}] {error['id'] or '(no id)'}: {error['detail']}")
    if any(outcome["failed"] for outcome in report.values()):
        ctx.exit(1)


from opencues.api_commands import api_group  # noqa: E402 - `opencues api …`, through opencues.client

main.add_command(api_group)


# -- the control API's operations, without HTTP (the same library as /-/) ---------------------


@main.group("control")
def control_group():
    """Test-harness operations of the control API (/-/), run directly on the database."""


def _print_json(payload) -> None:
    click.echo(json.dumps(payload, indent=2))


@control_group.command("accounts-create")
@click.option("--id", "account_id", help="Account id (default: generated).")
@click.option("--name", help="Display name.")
@click.option("--key", help="API key (default: generated).")
@click.option("--secret", help="API secret (default: generated).")
@click.option("--read-only", is_flag=True, help="The key may only read.")
@click.pass_context
def control_accounts_create(ctx, account_id, name, key, secret, read_only):
    """Create an account with an API key; prints {"id", "name", "key", "secret"}."""
    from opencues import control

    body = {k: v for k, v in {"id": account_id, "name": name, "key": key, "secret": secret}.items() if v is not None}
    _print_json(control.create_account(_db(ctx), {**body, "read_only": read_only}))


@control_group.command("accounts-delete")
@click.argument("account_id")
@click.pass_context
def control_accounts_delete(ctx, account_id):
    """Delete an account, its keys and all its data."""
    from opencues import control

    control.delete_account(_db(ctx), account_id, _file_store(ctx))
    click.echo(f"deleted account {account_id}")


@control_group.command("reset")
@click.option("--account", "account_id", help="Only this account's data (its keys are kept).")
@click.pass_context
def control_reset(ctx, account_id):
    """Delete every account and its data (or one account's data)."""
    from opencues import control

    if account_id:
        control.reset_account(_db(ctx), account_id, _file_store(ctx))
        click.echo(f"reset account {account_id}")
    else:
        control.reset(_db(ctx), _file_store(ctx))
        click.echo("reset: every account and its data deleted")


@control_group.command("snapshot")
@click.argument("name")
@click.option("--account", "account_id", help="Only this account's data.")
@click.pass_context
def control_snapshot(ctx, name, account_id):
    """Save all data (or one account's) as snapshot NAME."""
    from opencues import control

    _print_json(control.create_snapshot(_db(ctx), name, account_id, _file_store(ctx)))


@control_group.command("snapshots")
@click.pass_context
def control_snapshots(ctx):
    """List snapshots."""
    from opencues import control

    _print_json(control.list_snapshots(_db(ctx)))


@control_group.command("snapshot-export")
@click.argument("name")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File to write (default: stdout).")
@click.pass_context
def control_snapshot_export(ctx, name, output):
    """Write snapshot NAME's file (the format `seed` and `serve --seed` read)."""
    from opencues import control

    raw = control.get_snapshot(_db(ctx), name)
    if output:
        with open(output, "wb") as handle:
            handle.write(raw)
    else:
        click.echo(raw.decode())


@control_group.command("restore")
@click.argument("name")
@click.pass_context
def control_restore(ctx, name):
    """Restore snapshot NAME exactly."""
    from opencues import control

    _print_json(control.restore_snapshot(_db(ctx), name, _file_store(ctx)))


@control_group.command("snapshot-delete")
@click.argument("name")
@click.pass_context
def control_snapshot_delete(ctx, name):
    """Delete snapshot NAME."""
    from opencues import control

    control.delete_snapshot(_db(ctx), name)
    click.echo(f"deleted snapshot {name}")


@control_group.command("seed")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def control_seed(ctx, file):
    """Load a snapshot FILE (the accounts in it are replaced by their content in it)."""
    from opencues import control

    with open(file, "rb") as handle:
        _print_json(control.seed(_db(ctx), handle.read(), _file_store(ctx)))


@control_group.command("fault")
@click.option("--path", required=True, help="Glob on the request path, e.g. '*/segments*'.")
@click.option("--method", help="Only this HTTP method.")
@click.option("--account", "account_id", help="Only this account's requests.")
@click.option("--status", type=int, help="Answer this status (Problem Details).")
@click.option("--detail", help="The error's detail.")
@click.option("--retry-after", type=int, help="Retry-After seconds (429).")
@click.option("--delay-ms", type=int, help="Wait this long first.")
@click.option("--times", type=int, help="Only the next N matching requests.")
@click.option("--probability", type=float, help="Fire with this probability (0-1).")
@click.pass_context
def control_fault(ctx, **options):
    """Inject a fault into matching API requests."""
    from opencues import faults

    body = {("account_id" if k == "account_id" else k): v for k, v in options.items() if v is not None}
    _print_json(faults.add_fault(_db(ctx), body))


@control_group.command("faults")
@click.option("--clear", is_flag=True, help="Remove every fault.")
@click.option("--remove", "fault_id", help="Remove this fault.")
@click.pass_context
def control_faults(ctx, clear, fault_id):
    """List faults (or remove them)."""
    from opencues import faults

    if clear:
        click.echo(f"removed {faults.clear_faults(_db(ctx))} fault(s)")
    elif fault_id:
        faults.remove_fault(_db(ctx), fault_id)
        click.echo(f"removed fault {fault_id}")
    else:
        _print_json(faults.list_faults(_db(ctx)))


@control_group.command("job-mode")
@click.argument("account_id")
@click.argument("mode", type=click.Choice(["auto", "instant", "manual"]))
@click.pass_context
def control_job_mode(ctx, account_id, mode):
    """Set how ACCOUNT_ID's jobs run: auto, instant or manual."""
    from opencues import control

    _print_json(control.set_job_mode(_db(ctx), account_id, mode))


@control_group.command("run-job")
@click.argument("job_id")
@click.pass_context
def control_run_job(ctx, job_id):
    """Run a waiting job now, to its end; prints the job."""
    from opencues import control
    from opencues.filestore import open_file_store

    settings = ctx.obj["settings"]
    _print_json(control.run_job(_db(ctx), open_file_store(settings), settings, job_id))


@control_group.command("fail-job")
@click.argument("job_id")
@click.option("--reason", required=True, help="The Failed event's reason.")
@click.pass_context
def control_fail_job(ctx, job_id, reason):
    """End a job FAILED with a Failed event."""
    from opencues import control

    _print_json(control.fail_job(_db(ctx), job_id, reason))


@control_group.command("requests")
@click.option("--path", help="Glob on the request path.")
@click.option("--account", "account_id", help="Only this account's requests.")
@click.option("--limit", type=int, default=100, show_default=True, help="Most requests to list, newest first.")
@click.option("--clear", is_flag=True, help="Clear the journal instead.")
@click.pass_context
def control_requests(ctx, path, account_id, limit, clear):
    """The request journal, newest first (or clear it)."""
    from opencues import journal

    if clear:
        click.echo(f"removed {journal.clear(_db(ctx))} request(s)")
    else:
        _print_json(journal.list_requests(_db(ctx), path=path, account_id=account_id, limit=limit))


@control_group.command("outbox")
@click.option("--show", "message_id", help="Print this message, raw.")
@click.option("--clear", is_flag=True, help="Clear the outbox instead.")
@click.pass_context
def control_outbox(ctx, message_id, clear):
    """Export emails sent or written, newest first."""
    from opencues import control

    settings = ctx.obj["settings"]
    if clear:
        click.echo(f"removed {control.clear_outbox(settings)} message(s)")
    elif message_id:
        click.echo(control.outbox_message(settings, message_id).decode(errors="replace"))
    else:
        _print_json(control.list_outbox(settings))
CONFIG_EPILOG = (
    "Configuration: environment variables OPENCUES_* (see the README), among them OPENCUES_DATA_DIR "
    "(--data-dir) and OPENCUES_DATABASE_URL (--database-url), which this command also accepts."
)


def _document_configuration(group: click.Group) -> None:
    """Every command's --help names the environment variables that configure it."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _document_configuration(command)
        command.epilog = CONFIG_EPILOG


_document_configuration(main)
