"""On PostgreSQL the read routes' queries never hold the event loop (``Direct.run_async``): while
PostgreSQL answers one request, the process serves the others. Each read is slowed to 0.3 s here;
four requests at once must answer together, not one after the other."""

import asyncio
import time

import httpx
import pytest
from sqlalchemy import select, text

from opencues import events, profiles

SLOW = text("(SELECT true FROM pg_sleep(0.3))")
ROUTES = {  # the path under the account, and what the request accepts
    "profile": ("users/u/profile", "application/json"),
    "profile as CSV": ("users/u/profile", "text/csv"),
    "history": ("users/u/events", "application/json"),
    "history as CSV": ("users/u/events", "text/csv"),
}


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
@pytest.mark.parametrize("route", ROUTES)
def test_four_slow_reads_at_once_answer_together(app, account, monkeypatch, route):
    slowed_history = events._history_rows_statement

    monkeypatch.setattr(profiles, "_SELECT", profiles._SELECT.where(SLOW))
    monkeypatch.setattr(events, "_history_rows_statement", lambda db: select(slowed_history(db).subquery()).where(SLOW))
    path, accept = ROUTES[route]
    path, headers = f"/v2/accounts/{account.account_id}/{path}", {"Accept": accept}

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", auth=account.auth) as client:
            assert (await client.patch(f"/v2/accounts/{account.account_id}/users/u/profile", json={"a": 1})).status_code == 200
            await client.get(path, headers=headers)  # the first read opens a connection
            started = time.monotonic()
            answers = await asyncio.gather(*(client.get(path, headers=headers) for _ in range(4)))
            return time.monotonic() - started, answers

    elapsed, answers = asyncio.run(main())
    assert [a.status_code for a in answers] == [200] * 4
    assert elapsed < 0.9, f"four 0.3 s reads took {elapsed:.2f} s: the loop waited for each"
