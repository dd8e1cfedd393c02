"""Response rendering with content negotiation: JSON by default, CSV for ``Accept: text/csv``."""

from __future__ import annotations

from typing import Any, Sequence

import orjson
from starlette.requests import Request
from starlette.responses import Response

from opencues import csv_writer
from opencues.errors import problem_body

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv; charset=utf-8"


def wants_csv(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/csv" in accept.lower()


def json_response(payload: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON_TYPE, headers=headers)


def respond(
    request: Request,
    payload: dict | list,
    status: int = 200,
    columns: Sequence[str] | None = None,
    leading: Sequence[str] | None = None,
    csv_omit: Sequence[str] = (),
    objects_as_json: bool = False,
) -> Response:
    """Render ``payload`` (an object or a list of objects) as JSON or, on request, as CSV.

    ``columns`` fixes the CSV columns; ``leading`` puts some first and sorts the rest;
    ``csv_omit`` drops fields the CSV form does not carry (a job's ``events``);
    ``objects_as_json`` keeps nested objects as JSON text in one cell (see ``csv_writer.render``).
    """
    if not wants_csv(request):
        return json_response(payload, status)
    records = payload if isinstance(payload, list) else [payload]
    if csv_omit:
        records = [{k: v for k, v in r.items() if k not in csv_omit} for r in records]
    body = csv_writer.render(records, columns=columns, leading=leading, objects_as_json=objects_as_json)
    return Response(body, status_code=status, media_type=CSV_TYPE)


OK_COLUMNS = ("status", "title")
ACCEPTED_COLUMNS = ("status", "title", "job_id", "job_url")


def ok(request: Request) -> Response:
    return respond(request, {"status": 200, "title": "OK"}, columns=OK_COLUMNS)


def accepted(request: Request, job_id: str, job_url: str) -> Response:
    payload = {"job_id": job_id, "job_url": job_url, "status": 202, "title": "Accepted"}
    return respond(request, payload, status=202, columns=ACCEPTED_COLUMNS)


def problem_response(status: int, detail: str, headers: dict | None = None) -> Response:
    """Errors are always JSON Problem Details, whatever the Accept header asked for."""
    return Response(
        orjson.dumps(problem_body(status, detail)),
        status_code=status,
        media_type=JSON_TYPE,
        headers=headers,
    )
