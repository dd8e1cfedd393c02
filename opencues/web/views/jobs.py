from __future__ import annotations

from starlette.requests import Request

from opencues import jobs
from opencues.web.auth import authorize
from opencues.web.responses import respond
from opencues.web.urls import account_url


async def list_jobs(request: Request, account_id: str):
    authorize(request, account_id)
    items = jobs.list_jobs(request.app.state.db, account_id)
    for item in items:
        item["url"] = account_url(request, account_id, "jobs", item["id"])
    return respond(request, items, columns=jobs.COLUMNS)


async def get_job(request: Request, account_id: str, job_id: str):
    authorize(request, account_id)
    job = jobs.get_job(request.app.state.db, account_id, job_id)
    job["url"] = account_url(request, account_id, "jobs", job_id)
    return respond(request, job, columns=jobs.COLUMNS, csv_omit=("events",))
