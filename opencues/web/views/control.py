"""The control API under ``/-/``: a thin HTTP shell over ``opencues.control``.

Each view imports the control library (``opencues.control``, ``faults``, ``journal``) when first
called: a plain start serves none of them (docs/decisions.md, "Start-up: the second pass").

``/-/health`` and ``/-/ready`` are always on and open. Everything else exists only when an admin
token is configured (``OPENCUES_ADMIN_TOKEN``; 404 otherwise) and needs it as
``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import hmac

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from opencues.errors import ApiError
from opencues.web.bodies import read_body, read_json
from opencues.web.responses import json_response

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="opencues control"'}


def require_admin(request: Request) -> None:
    token = request.app.state.settings.admin_token
    if not token:
        raise ApiError(404, f"no such endpoint: {request.method} {request.url.path}")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "the control API needs `Authorization: Bearer <admin token>`", _CHALLENGE)
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(401, "wrong admin token", _CHALLENGE)


def _db(request: Request):
    return request.app.state.db


def _done(detail: str = "OK", **extra) -> Response:
    return json_response({"status": 200, "title": "OK", "detail": detail, **extra})


async def _optional_json(request: Request):
    if not (await request.body()).strip():
        return {}
    return await read_json(request)


# -- health ------------------------------------------------------------------------------------


async def health(request: Request):
    return json_response({"status": 200, "title": "OK"})


async def ready(request: Request):
    from opencues import control

    reason = await run_in_threadpool(control.readiness, _db(request))
    if reason is not None:
        raise ApiError(503, reason, {"Retry-After": "1"})
    return json_response({"status": 200, "title": "OK", "schema": control.schema_head()})


# -- accounts and resets -----------------------------------------------------------------------


async def create_account(request: Request):
    from opencues import control

    require_admin(request)
    body = await _optional_json(request)
    return json_response(control.create_account(_db(request), body), status=201)


async def delete_account(request: Request, account_id: str):
    from opencues import control

    require_admin(request)
    await run_in_threadpool(control.delete_account, _db(request), account_id, request.app.state.file_store)
    return _done(f"account {account_id} deleted")


async def reset(request: Request):
    from opencues import control

    require_admin(request)
    await run_in_threadpool(control.reset, _db(request), request.app.state.file_store)
    return _done("every account and its data deleted")


async def reset_account(request: Request, account_id: str):
    from opencues import control

    require_admin(request)
    await run_in_threadpool(control.reset_account, _db(request), account_id, request.app.state.file_store)
    return _done(f"account {account_id}'s data deleted; its keys kept")


# -- snapshots ---------------------------------------------------------------------------------


async def create_snapshot(request: Request):
    from opencues import control

    require_admin(request)
    body = await read_json(request)
    if "name" not in body:
        raise ApiError(400, "`name` is required")
    unknown = set(body) - {"name", "account_id"}
    if unknown:
        raise ApiError(400, f"`{sorted(unknown)[0]}` is not a snapshot field; expected `name` and `account_id`")
    info = await run_in_threadpool(control.create_snapshot, _db(request), body["name"], body.get("account_id"),
                                  request.app.state.file_store)  # fmt: skip
    return json_response(info, status=201)


async def list_snapshots(request: Request):
    from opencues import control

    require_admin(request)
    return json_response(control.list_snapshots(_db(request)))


async def get_snapshot(request: Request, name: str):
    from opencues import control

    require_admin(request)
    raw = await run_in_threadpool(control.get_snapshot, _db(request), name)
    return Response(raw, media_type="application/json", headers={"Content-Disposition": f'attachment; filename="{name}.json"'})


async def restore_snapshot(request: Request, name: str):
    from opencues import control

    require_admin(request)
    return json_response(await run_in_threadpool(control.restore_snapshot, _db(request), name, request.app.state.file_store))


async def delete_snapshot(request: Request, name: str):
    from opencues import control

    require_admin(request)
    control.delete_snapshot(_db(request), name)
    return _done(f"snapshot {name} deleted")


async def seed(request: Request):
    from opencues import control

    require_admin(request)
    raw = await read_body(request, request.app.state.settings.max_upload_bytes)
    return json_response(await run_in_threadpool(control.seed, _db(request), raw, request.app.state.file_store))


# -- faults ------------------------------------------------------------------------------------


async def add_fault(request: Request):
    from opencues import faults

    require_admin(request)
    return json_response(faults.add_fault(_db(request), await read_json(request)), status=201)


async def list_faults(request: Request):
    from opencues import faults

    require_admin(request)
    return json_response(faults.list_faults(_db(request)))


async def remove_fault(request: Request, fault_id: str):
    from opencues import faults

    require_admin(request)
    faults.remove_fault(_db(request), fault_id)
    return _done(f"fault {fault_id} removed")


async def clear_faults(request: Request):
    from opencues import faults

    require_admin(request)
    return _done("faults removed", removed=faults.clear_faults(_db(request)))


# -- jobs --------------------------------------------------------------------------------------


async def set_job_mode(request: Request, account_id: str):
    from opencues import control

    require_admin(request)
    body = await read_json(request)
    return json_response(control.set_job_mode(_db(request), account_id, body.get("mode")))


async def run_job(request: Request, job_id: str):
    from opencues import control

    require_admin(request)
    state = request.app.state
    return json_response(await run_in_threadpool(control.run_job, state.db, state.file_store, state.settings, job_id))


async def fail_job(request: Request, job_id: str):
    from opencues import control

    require_admin(request)
    body = await read_json(request)
    return json_response(control.fail_job(_db(request), job_id, body.get("reason")))


# -- journal and outbox ------------------------------------------------------------------------


async def _flush_journal(request: Request) -> None:
    """This process's pending journal entries first: a client's last request is listed (and cleared)."""
    writer = getattr(request.app.state, "journal_writer", None)
    if writer is not None:
        await run_in_threadpool(writer.flush)


async def list_requests(request: Request):
    from opencues import journal

    require_admin(request)
    await _flush_journal(request)
    query = request.query_params
    entries = await run_in_threadpool(
        journal.list_requests, _db(request), path=query.get("path"), account_id=query.get("account_id"), limit=query.get("limit")
    )
    return json_response(entries)


async def clear_requests(request: Request):
    from opencues import journal

    require_admin(request)
    await _flush_journal(request)
    return _done("journal cleared", removed=journal.clear(_db(request)))


async def list_outbox(request: Request):
    from opencues import control

    require_admin(request)
    return json_response(control.list_outbox(request.app.state.settings))


async def get_outbox_message(request: Request, message_id: str):
    from opencues import control

    require_admin(request)
    return Response(control.outbox_message(request.app.state.settings, message_id), media_type="message/rfc822")


async def clear_outbox(request: Request):
    from opencues import control

    require_admin(request)
    return _done("outbox cleared", removed=control.clear_outbox(request.app.state.settings))
