"""Receiving a bulk payload: the request body (or its uploaded file) streamed durably into the file store.

Bulk imports and segment uploads answer 202 only after their payload is safely stored, and they
may be large (20 MB plain bodies, 200 MB uploaded files), so nothing here holds a whole body in
memory except a JSON document (≤ ``max_body_bytes``), which must be parsed to be checked.
Multipart bodies go through python-multipart's streaming parser, chunk by chunk.

The stored bytes are exactly what the client sent (for multipart: the file part's content), so a
job re-reads them with ``opencues.readers`` and the SHA-256 identifies the request for
``Idempotency-Key`` matching.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from opencues.errors import ApiError, bad_request
from opencues.filestore import new_key
from opencues.readers import Format, detect_format

ACCEPTED = "application/json, application/ndjson, text/csv, or a file upload (multipart/form-data or multipart/mixed)"
# Room for multipart boundaries, part headers and small form fields around the uploaded file.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StoredPayload:
    key: str
    format: Format
    size: int
    sha256: str


async def receive_payload(
    request: Request, *, user_ids: bool = False, fields: dict | None = None, text_as_csv: bool = False
) -> StoredPayload:
    """Store the request's payload and describe it; 4xx ``ApiError`` when it cannot be accepted.

    ``user_ids=True`` is for segment uploads: a JSON body must then be ``{"user_ids": [...]}``.
    ``fields``: filled with a multipart body's small form fields (Studio's ``csrf_token`` and
    choices), up to ``FORM_FIELD_BYTES`` each, read in the same pass as the file.
    ``text_as_csv``: an uploaded ``.txt``/``text/plain`` file is read as CSV (Studio's "a text file
    of user ids, one a line"; the API keeps answering 415 for it).
    """
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in ("multipart/form-data", "multipart/mixed"):
        return await _receive_multipart(request, content_type, user_ids, fields, text_as_csv)
    fmt = detect_format(kind, None)
    if fmt is None:
        sent = f"Content-type {kind!r}" if kind else "no Content-type"
        raise ApiError(415, f"{sent} is not supported here; send {ACCEPTED}")
    settings = request.app.state.settings
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large("request body", limit)
    sink = _Sink(request.app.state.file_store, fmt, limit, "request body", keep=fmt is Format.JSON)
    try:
        async for chunk in request.stream():
            sink.write(chunk)
        if sink.blank:
            raise bad_request("request body is empty")
        if fmt is Format.JSON:
            # Up to 20 MB to parse: off the event loop.
            await run_in_threadpool(_check_json, sink.kept(), user_ids, "request body")
        return await sink.commit()
    except BaseException as exc:
        sink.abort(exc)
        raise


def _too_large(what: str, limit: int) -> ApiError:
    return ApiError(413, f"{what} exceeds the limit of {limit} bytes")


def _check_json(data: bytes, user_ids: bool, what: str) -> None:
    """A JSON payload must be an object or an array of records; for segments ``{"user_ids": [strings]}``."""
    try:
        document = orjson.loads(data.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"{what} is not valid JSON: {exc}") from None
    if user_ids:
        if not isinstance(document, dict) or "user_ids" not in document:
            raise bad_request("`user_ids` is required: send {\"user_ids\": [\"id\", ...]}")
        ids = document["user_ids"]
        if not isinstance(ids, list):
            raise bad_request("`user_ids` must be an array of strings")
        for index, value in enumerate(ids):
            if not isinstance(value, str):
                raise bad_request(f"`user_ids[{index}]` must be a string")
    elif not isinstance(document, (dict, list)):
        raise bad_request(f"{what} must be a JSON object or an array of objects")


class _Sink:
    """One stored file being written: size limit, SHA-256 and blankness tracked per chunk."""

    def __init__(self, store, fmt: Format, limit: int, what: str, *, keep: bool = False):
        self.format = fmt
        self.limit = limit
        self.what = what
        self.key = new_key("uploads", "." + fmt.value)
        self.size = 0
        self.blank = True
        self._hash = hashlib.sha256()
        self._kept = bytearray() if keep else None
        self._context = store.writer(self.key)
        self._file = self._context.__enter__()
        self._open = True

    def write(self, data) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise _too_large(self.what, self.limit)
        if self.blank and data and not bytes(data).isspace():
            self.blank = False
        self._hash.update(data)
        self._file.write(data)
        if self._kept is not None:
            self._kept += data

    def kept(self) -> bytes:
        return bytes(self._kept)

    async def commit(self) -> StoredPayload:
        """Flush, fsync and publish the file (in a thread: fsync blocks)."""
        self._open = False
        await run_in_threadpool(self._context.__exit__, None, None, None)
        return StoredPayload(self.key, self.format, self.size, self._hash.hexdigest())

    def abort(self, exc: BaseException | None = None) -> None:
        """Remove the partial file."""
        if self._open:
            self._open = False
            exc = exc or ApiError(400, "upload abandoned")
            self._context.__exit__(type(exc), exc, exc.__traceback__)


FORM_FIELD = -1
FORM_FIELD_BYTES = 4096


def _part_rank(name: str | None, filename: str | None) -> int:
    """Which multipart part is the upload: the part named ``file`` (2); else the first part with a
    filename (1); else, as in ``multipart/mixed``, the first part without a name (0). Other named
    parts are ordinary form fields (``FORM_FIELD``) and are ignored."""
    if name == "file":
        return 2
    if filename:
        return 1
    if name is None:
        return 0
    return FORM_FIELD


async def _receive_multipart(
    request: Request, content_type: str, user_ids: bool, fields: dict | None = None, text_as_csv: bool = False
) -> StoredPayload:
    settings = request.app.state.settings
    store = request.app.state.file_store
    file_limit = settings.max_upload_bytes
    json_limit = settings.max_body_bytes
    body_limit = file_limit + MULTIPART_OVERHEAD_BYTES
    _kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise bad_request("a multipart Content-type needs a `boundary` parameter")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > body_limit:
        raise _too_large("uploaded file", file_limit)

    state = {
        "headers": [],
        "field": bytearray(),
        "value": bytearray(),
        "sink": None,  # the _Sink of the chosen part while its data streams
        "writing": False,  # the current part's data goes to the sink
        "best": None,  # rank of the chosen part
        "unknown": None,  # description of a chosen part whose format cannot be told
        "ended": False,
        "parts": 0,
        "field_name": None,  # the form field whose value is being read (``fields`` wanted)
    }

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"].append((bytes(state["field"]).strip().lower(), bytes(state["value"]).strip()))
        state["field"].clear()
        state["value"].clear()

    def on_headers_finished():
        state["parts"] += 1
        headers = dict(state["headers"])
        state["headers"] = []
        name = filename = None
        disposition = headers.get(b"content-disposition")
        if disposition:
            _value, options = parse_options_header(disposition)
            if b"name" in options:
                name = options[b"name"].decode("utf-8", "replace")
            if b"filename" in options:
                filename = options[b"filename"].decode("utf-8", "replace")
        part_type = headers.get(b"content-type", b"").decode("latin-1")
        rank = _part_rank(name, filename)
        state["writing"] = False
        state["field_name"] = None
        if rank == FORM_FIELD and fields is not None:
            state["field_name"] = name
            fields[name] = ""
        if rank == FORM_FIELD or (state["best"] is not None and rank <= state["best"]):
            return
        # A better candidate than the one chosen so far: it replaces it.
        if state["sink"] is not None:
            state["sink"].abort()
            state["sink"] = None
        state["best"] = rank
        fmt = detect_format(part_type, filename)
        if fmt is None and text_as_csv and (part_type.lower().startswith("text/plain") or (filename or "").lower().endswith(".txt")):
            fmt = Format.CSV
        if fmt is None:
            what = f"part {name!r}" if name else f"part {state['parts']}"
            shown = f"filename {filename!r}, " if filename else ""
            state["unknown"] = (
                f"cannot tell the format of the uploaded {what} ({shown}Content-type {part_type or 'none'!r}); "
                "upload a .csv, .ndjson/.jsonl or .json file, or give the part a Content-type of "
                "text/csv, application/ndjson or application/json"
            )
            return
        state["unknown"] = None
        limit = json_limit if fmt is Format.JSON else file_limit
        state["sink"] = _Sink(store, fmt, limit, "uploaded file", keep=fmt is Format.JSON)
        state["writing"] = True

    def on_part_data(data, start, end):
        name = state["field_name"]
        if name is not None and len(fields[name]) < FORM_FIELD_BYTES:
            fields[name] = (fields[name] + bytes(data[start:end]).decode("utf-8", "replace"))[:FORM_FIELD_BYTES]
        if state["writing"]:
            state["sink"].write(memoryview(data)[start:end])

    def on_part_end():
        state["writing"] = False
        state["field_name"] = None

    def on_end():
        state["ended"] = True

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
    )
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise _too_large("uploaded file", file_limit)
            parser.write(chunk)
        if not state["ended"]:
            if state["parts"] == 0:
                raise bad_request("malformed multipart body: no parts found (wrong boundary?)")
            raise bad_request("malformed multipart body: it ends before its closing boundary")
        if state["unknown"]:
            raise ApiError(415, state["unknown"])
        sink = state["sink"]
        if sink is None:
            raise bad_request("the multipart body has no file part; upload the file as `file` (curl -F file=@data.csv)")
        if sink.blank:
            raise bad_request("the uploaded file is empty")
        if sink.format is Format.JSON:
            await run_in_threadpool(_check_json, sink.kept(), user_ids, "the uploaded file")
        return await sink.commit()
    except MultipartParseError as exc:
        if state["sink"] is not None:
            state["sink"].abort(exc)
        raise bad_request(f"malformed multipart body: {exc}") from None
    except BaseException as exc:
        if state["sink"] is not None:
            state["sink"].abort(exc)
        raise
