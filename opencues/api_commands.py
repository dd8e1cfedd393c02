"""``opencues api …``: bulk imports, exports and job waits against any Appcues API server (the
vendor's or opencues), through ``opencues.client``, with progress bars.

On a terminal, progress is drawn with ``rich``; otherwise (CI logs, pipes) plain lines go to
stderr. The result (the job, as JSON) always goes to stdout.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click


class Progress:
    """One task's progress: a rich bar on a terminal, a few plain lines otherwise."""

    def __init__(self, description: str, total: float | None = None, *, plain: bool | None = None):
        self.plain = (not sys.stderr.isatty()) if plain is None else plain
        self.description = description
        self.total = total
        self.done = 0.0
        self._last_line = 0.0
        if not self.plain:
            from rich.progress import BarColumn, DownloadColumn, Progress as Bars, TextColumn, TimeElapsedColumn

            columns = [TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn()]
            if total:
                columns.insert(2, DownloadColumn())
            self._bars = Bars(*columns, transient=False, console=_stderr_console())
            self._bars.start()
            self._task = self._bars.add_task(description, total=total)

    def advance(self, amount: float) -> None:
        self.update(self.done + amount)

    def update(self, done: float, description: str | None = None) -> None:
        self.done = done
        if description:
            self.description = description
        if not self.plain:
            self._bars.update(self._task, completed=done, description=self.description)
        elif time.monotonic() - self._last_line >= 2.0:
            self._last_line = time.monotonic()
            click.echo(f"{self.description}: {self._amount()}", err=True)

    def _amount(self) -> str:
        if self.total:
            return f"{self.done / 1e6:.1f} / {self.total / 1e6:.1f} MB"
        return f"{self.done:,.0f}"

    def finish(self, description: str | None = None) -> None:
        if description:
            self.description = description
        if not self.plain:
            self._bars.update(self._task, completed=self.total or self.done, description=self.description)
            self._bars.stop()
        else:
            click.echo(f"{self.description}: {self._amount()}", err=True)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


class _CountingReader:
    """A binary file whose reads advance a progress bar (the upload streams from it)."""

    def __init__(self, handle, progress: Progress):
        self.handle = handle
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.progress.advance(len(chunk))
        return chunk


def wait_with_progress(client, job, *, plain: bool | None, timeout: float) -> dict:
    """Poll a job to its end, showing the rows its ``Progress`` events report."""
    progress = Progress("job IN_PROGRESS: rows processed", plain=plain)

    def on_poll(current: dict) -> None:
        rows = 0
        for event in current.get("events") or []:
            attributes = event.get("attributes") or {}
            rows = max(rows, attributes.get("rows_processed", 0), attributes.get("ingestions_completed", 0))
        progress.update(rows, f"job {current.get('status')}: rows processed")

    try:
        finished = client.wait(job, timeout=timeout, on_poll=on_poll)
    finally:
        progress.finish()
    return finished


@click.group("api")
@click.option("--base-url", envvar="APPCUES_BASE_URL", help="The API server's root (default https://api.appcues.com).")
@click.option("--key", envvar="APPCUES_API_KEY", help="API key (APPCUES_API_KEY).")
@click.option("--secret", envvar="APPCUES_API_SECRET", help="API secret (APPCUES_API_SECRET).")
@click.option("--account", "account_id", envvar="APPCUES_ACCOUNT_ID", help="Account id (APPCUES_ACCOUNT_ID).")
@click.option("--plain", is_flag=True, default=None, help="Plain progress lines even on a terminal.")
@click.pass_context
def api_group(ctx, base_url, key, secret, account_id, plain):
    """Talk to an Appcues API server (the vendor's or opencues) with the Python client."""
    ctx.ensure_object(dict)
    ctx.obj["api"] = dict(base_url=base_url, key=key, secret=secret, account_id=account_id)
    ctx.obj["plain"] = True if plain else None  # None: plain unless stderr is a terminal


def _client(ctx):
    from opencues.client import Client  # imported on use: other commands need not load httpx

    try:
        return Client(**ctx.obj["api"])
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _emit(payload) -> None:
    click.echo(json.dumps(payload, indent=2))


def _api_errors(function):
    """AppcuesError, or no answer at all → a one-line message and exit status 1."""
    from functools import wraps

    @wraps(function)
    def wrapper(*args, **kwargs):
        import httpx

        from opencues.client import AppcuesError

        try:
            return function(*args, **kwargs)
        except AppcuesError as exc:
            raise click.ClickException(f"{exc.status} {exc.title}: {exc.detail}") from None
        except httpx.TransportError as exc:  # refused, unreachable, timed out: no traceback
            raise click.ClickException(f"cannot reach the API server: {exc}") from None
        except TimeoutError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@api_group.command("import")
@click.argument("kind", type=click.Choice(["events", "profiles", "groups"]))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--no-wait", is_flag=True, help="Print the 202 answer instead of waiting for the job.")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to wait for the job.")
@click.pass_context
@_api_errors
def api_import(ctx, kind, file: Path, no_wait, timeout):
    """Upload FILE (.csv, .ndjson or .json) as a bulk import of KIND and wait for its job."""
    client = _client(ctx)
    plain = ctx.obj["plain"]
    upload = Progress(f"uploading {file.name}", total=file.stat().st_size, plain=plain)
    from opencues.client import _TYPES, NDJSON

    with open(file, "rb") as handle:
        method = {"events": client.import_events, "profiles": client.import_profiles, "groups": client.import_groups}[kind]
        accepted = method(_CountingReader(handle, upload), content_type=_TYPES.get(file.suffix.lower(), NDJSON))
    upload.finish(f"uploaded {file.name}")
    if no_wait:
        _emit(accepted)
        return
    job = wait_with_progress(client, accepted, plain=plain, timeout=timeout)
    _emit(job)
    if job["status"] != "COMPLETED":
        ctx.exit(1)


@api_group.command("export")
@click.argument("kind", type=click.Choice(["events"]))
@click.option("--start-time", required=True, help="ISO 8601 or epoch ms.")
@click.option("--end-time", help="ISO 8601 or epoch ms (default: now).")
@click.option("--email", "emails", multiple=True, required=True, help="Where the link is sent (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True, help="File format of the export.")
@click.option("--conditions", default="[]", help="The conditions, as JSON (default: every event).")
@click.option("--download", type=click.Path(dir_okay=False, writable=True, path_type=Path), help="Save the file here once ready.")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to wait for the job.")
@click.pass_context
@_api_errors
def api_export(ctx, kind, start_time, end_time, emails, fmt, conditions, download, timeout):
    """Export events; waits for the job and, with --download, saves the file."""
    client = _client(ctx)
    plain = ctx.obj["plain"]
    try:
        parsed = json.loads(conditions)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--conditions") from None
    email = emails[0] if len(emails) == 1 else list(emails)
    accepted = client.export_events(email=email, format=fmt, conditions=parsed, start_time=start_time, end_time=end_time)
    job = wait_with_progress(client, accepted, plain=plain, timeout=timeout)
    if download and job["status"] == "COMPLETED":
        url = next((e["attributes"].get("download_url") for e in job["events"] if e["name"] == "Completed"), None)
        if not url:
            raise click.ClickException("the export's Completed event carries no download_url; use the emailed link")
        _download(url, download, plain)
    _emit(job)
    if job["status"] != "COMPLETED":
        ctx.exit(1)


def _download(url: str, target: Path, plain: bool | None) -> None:
    import httpx

    with httpx.stream("GET", url, timeout=60, follow_redirects=True) as response:
        if response.status_code >= 400:
            from opencues.client import AppcuesError

            response.read()
            raise AppcuesError.from_response(response)
        total = int(response.headers.get("content-length") or 0) or None
        progress = Progress(f"downloading {target.name}", total=total, plain=plain)
        with open(target, "wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
                progress.advance(len(chunk))
        progress.finish(f"saved {target}")


@api_group.group("jobs")
def api_jobs():
    """Offline jobs."""


@api_jobs.command("wait")
@click.argument("job_id")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to wait.")
@click.pass_context
@_api_errors
def api_jobs_wait(ctx, job_id, timeout):
    """Wait for job JOB_ID to end; prints it (exit status 1 unless COMPLETED)."""
    job = wait_with_progress(_client(ctx), job_id, plain=ctx.obj["plain"], timeout=timeout)
    _emit(job)
    if job["status"] != "COMPLETED":
        ctx.exit(1)
