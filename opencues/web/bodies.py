"""Reading request bodies: size limits enforced while streaming, content types, JSON parsing."""

from __future__ import annotations

import orjson
from starlette.requests import Request

from opencues.errors import ApiError, bad_request


def media_type(request: Request) -> str:
    """The Content-type without parameters, lower-cased ('' when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body exceeds the limit of {limit} bytes")


async def read_body(request: Request, limit: int | None = None) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed ``limit``."""
    limit = limit or request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, *, require_object: bool = True, empty=None):
    """A JSON request body. Only ``application/json`` is accepted (a missing Content-type is
    read as JSON); anything else is 415. ``empty``: what an empty body stands for (default: 400)."""
    kind = media_type(request)
    if kind not in ("", "application/json"):
        raise ApiError(415, f"Content-type {kind!r} is not supported here; send application/json")
    body = await read_body(request)
    if not body.strip():
        if empty is not None:
            return empty
        raise bad_request("request body is empty; expected a JSON object")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    if require_object and not isinstance(payload, dict):
        raise bad_request("request body must be a JSON object")
    if b"\\u0000" in body:  # cheap pre-check: NUL can only arrive escaped in valid JSON
        _refuse_nul(payload)
    return payload


def _refuse_nul(value, where: str = "") -> None:
    """400 naming the first field holding a NUL character: PostgreSQL text and JSONB cannot store
    one, so it is refused on every backend alike."""
    if isinstance(value, str):
        if "\x00" in value:
            raise bad_request(f"`{where or 'body'}` must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            here = f"{where}.{key}" if where else key
            if "\x00" in key:
                raise bad_request(f"field names must not contain NUL characters (in `{where or 'body'}`)")
            _refuse_nul(item, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_nul(item, f"{where}[{index}]")
