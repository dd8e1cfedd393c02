from __future__ import annotations

from starlette.requests import Request

from opencues import sdk_keys
from opencues.web.auth import authorize
from opencues.web.bodies import read_json
from opencues.web.responses import ok, respond

CSV_COLUMNS = sdk_keys.COLUMNS


async def list_sdk_keys(request: Request, account_id: str):
    authorize(request, account_id)
    return respond(request, sdk_keys.list_keys(request.app.state.db, account_id), columns=CSV_COLUMNS)


async def get_sdk_key(request: Request, account_id: str, sdk_key_id: str):
    authorize(request, account_id)
    return respond(request, sdk_keys.get_key(request.app.state.db, account_id, sdk_key_id), columns=CSV_COLUMNS)


async def create_sdk_key(request: Request, account_id: str):
    authorize(request, account_id, write=True)
    body = await read_json(request)
    key = sdk_keys.create_key(request.app.state.db, account_id, body)
    return respond(request, key, status=201, columns=(*CSV_COLUMNS, "secret"))


async def delete_sdk_key(request: Request, account_id: str, sdk_key_id: str):
    authorize(request, account_id, write=True)
    sdk_keys.delete_key(request.app.state.db, account_id, sdk_key_id)
    return ok(request)


async def set_tag_field(request: Request, account_id: str, sdk_key_id: str):
    authorize(request, account_id, write=True)
    body = await read_json(request)
    key = sdk_keys.set_tag_field(request.app.state.db, account_id, sdk_key_id, body)
    return respond(request, key, columns=CSV_COLUMNS)


def _switch(setting: str, on: bool):
    async def handler(request: Request, account_id: str, sdk_key_id: str):
        authorize(request, account_id, write=True)
        sdk_keys.set_switch(request.app.state.db, account_id, sdk_key_id, setting, on)
        return ok(request)

    handler.__name__ = handler.__qualname__ = f"{'enable' if on else 'disable'}_{setting}"
    return handler


enable_enforcement_mode = _switch("enforcement_mode", True)
disable_enforcement_mode = _switch("enforcement_mode", False)
enable_secure_data_ingest = _switch("secure_data_ingest", True)
disable_secure_data_ingest = _switch("secure_data_ingest", False)
