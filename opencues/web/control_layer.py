"""The one ASGI layer of the control API: injected faults, the request journal and "instant" jobs.

Installed by ``create_app`` only when the control API (``OPENCUES_ADMIN_TOKEN``) or the journal
(``OPENCUES_JOURNAL=on``) is on, so a production server pays nothing for it. Requests under
``/-/`` (the control API itself) and ``/studio`` (the console that shows the journal) pass
straight through.

For every other request, in order:

1. faults (control API on): the first matching fault (``opencues.faults``) delays the request
   and/or answers its status instead of the API;
2. the request runs (its body is copied, up to ``journal.BODY_BYTES``, as it is read);
3. a 202 of an account in ``instant`` job mode holds its answer until the job has ended;
4. journal on: the entry goes to the process's ``journal.Writer``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from starlette.concurrency import run_in_threadpool

from opencues import control, faults, journal
from opencues.web.responses import problem_response

log = logging.getLogger("opencues")

ACCOUNT_PREFIX = "/v2/accounts/"


def account_of(path: str) -> str | None:
    """The account a ``/v2/accounts/{id}/…`` path names (as sent, percent-decoded by the server)."""
    if not path.startswith(ACCOUNT_PREFIX):
        return None
    return path[len(ACCOUNT_PREFIX) :].split("/", 1)[0] or None


def job_id_of(body: bytes, content_type: str) -> str | None:
    """The ``job_id`` of a 202 answer, JSON or CSV."""
    try:
        if "csv" in content_type:
            header, _, values = body.decode().partition("\n")
            names, cells = header.strip().split(","), values.strip().split(",")
            return dict(zip(names, cells)).get("job_id")
        return orjson.loads(body).get("job_id")
    except (ValueError, AttributeError):
        return None


class ControlLayer:
    def __init__(self, app, *, state, settings):
        self.app = app
        self.state = state  # the app's state: ``db`` is set when the lifespan starts
        self.control_on = bool(settings.admin_token)
        self.journal_on = settings.journal == "on"
        if self.journal_on:
            state.journal_writer = journal.Writer(lambda: state.db, settings.journal_max_requests)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan" and self.journal_on:
            await self.app(scope, self._closing_journal(receive), send)
            return
        if scope["type"] != "http" or scope["path"].startswith(("/-/", "/studio")):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        db = self.state.db
        method, path = scope["method"], scope["path"]
        account_id = account_of(path)
        fault = await self._fault(db, method, path, account_id) if self.control_on else None
        if fault is not None and fault.delay_ms:
            await asyncio.sleep(fault.delay_ms / 1000)

        body = bytearray()

        async def copying_receive():
            message = await receive()
            if message["type"] == "http.request" and len(body) < journal.BODY_BYTES:
                body.extend(message.get("body", b"")[: journal.BODY_BYTES - len(body)])
            return message

        status = 0
        held: list = []  # an instant-mode 202, kept until its job has run

        async def watching_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 202 and self.control_on and account_id and control.job_mode(db, account_id) == "instant":
                    held.append(message)
                    return
            elif message["type"] == "http.response.body":
                if held:
                    held.append(message)
                    if message.get("more_body"):
                        return
                    await self._run_instant_job(db, held)
                    for kept in held[:-1]:
                        await send(kept)
                    message = held[-1]
                    held.clear()
                if not message.get("more_body") and self.journal_on:
                    self._record(scope, bytes(body), status, started, account_id, fault is not None)
            await send(message)

        if fault is not None and fault.status is not None:
            await self._drain(copying_receive)
            response = problem_response(fault.status, fault.detail or f"injected fault {fault.id}", _fault_headers(fault))
            await response(scope, copying_receive, watching_send)
            return
        try:
            await self.app(scope, copying_receive, watching_send)
        except Exception:
            # The server's error layer, outside this one, answers 500: journal it here.
            if self.journal_on and status == 0:
                self._record(scope, bytes(body), 500, started, account_id, fault is not None)
            raise

    @staticmethod
    async def _fault(db, method: str, path: str, account_id: str | None):
        for fault in faults.candidates(db, method, path, account_id):
            # Spending one of its `times` writes: in a thread, not on the event loop.
            if fault.times_left is None or await run_in_threadpool(faults.spend, db, fault.id):
                return fault
        return None

    def _closing_journal(self, receive):
        """The lifespan's ``receive``: at shutdown, the journal's writer stops before the app
        disposes of the database."""

        async def closing_receive():
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await run_in_threadpool(self.state.journal_writer.close)
            return message

        return closing_receive

    @staticmethod
    async def _drain(receive) -> None:
        """Read the request body a faulted request never gets to (the journal shows it)."""
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                return

    async def _run_instant_job(self, db, held: list) -> None:
        headers = dict(held[0].get("headers", []))
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        job_id = job_id_of(b"".join(m.get("body", b"") for m in held[1:]), content_type)
        if job_id is None:
            return
        state = self.state
        try:
            await run_in_threadpool(control.run_job, db, state.file_store, state.settings, job_id)
        except Exception:  # noqa: BLE001 - the 202 stands; the job stays for a worker or /-/jobs/{id}/run
            log.exception("instant job %s could not be run", job_id)

    def _record(self, scope, body: bytes, status: int, started: float, account_id, faulted: bool) -> None:
        self.state.journal_writer.add(journal.entry(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=journal.headers_of(scope.get("headers", [])),
            body=body,
            status=status,
            duration_ms=(time.perf_counter() - started) * 1000,
            account_id=account_id,
            faulted=faulted,
        ))  # fmt: skip


def _fault_headers(fault) -> dict:
    if fault.status == 429 or fault.retry_after is not None:
        return {"Retry-After": str(fault.retry_after if fault.retry_after is not None else 1)}
    return {}
