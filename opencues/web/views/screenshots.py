from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from opencues import screenshots
from opencues.web.auth import authorize


async def get_screenshots(request: Request, account_id: str, resource_id: str):
    """The ZIP whatever the Accept header asks for: it is the only form this resource has."""
    authorize(request, account_id)
    entries = screenshots.images(request.app.state.db, account_id, resource_id)
    name = screenshots.filename(resource_id)
    disposition = f"attachment; filename=\"{quote(name, safe='')}\"; filename*=UTF-8''{quote(name, safe='')}"
    return Response(
        screenshots.archive(entries),
        media_type=screenshots.MEDIA_TYPE,
        headers={"Content-Disposition": disposition},
    )
