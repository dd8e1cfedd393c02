"""Screenshots of draft content, as one ZIP archive per flow, experience or checklist.

The vendor renders a PNG per step of a draft in its Studio; opencues renders no content, so it
holds no images and every known id gets a valid empty archive (the spec's answer when there are
none). The archive is still a real ZIP — built with the standard library, entries named
``<index>-<step_id>.png`` — so a client unpacking it works the same against either server.
"""

from __future__ import annotations

import io
import zipfile

from sqlalchemy import select

from opencues import experiences
from opencues.errors import ApiError
from opencues.storage import Database
from opencues.storage.schema import flows

NOT_FOUND = "content not found"
MEDIA_TYPE = "application/zip"


def filename(resource_id: str) -> str:
    """The name the vendor's CLI saves the archive under."""
    return f"{resource_id}-screenshots.zip"


def images(db: Database, account_id: str, resource_id: str) -> list[tuple[str, bytes]]:
    """(entry name, PNG bytes) of each step screenshot of this content; 404 for an unknown id."""
    with db.connect() as conn:
        is_flow = conn.execute(
            select(flows.c.id).where(flows.c.account_id == account_id, flows.c.id == resource_id)
        ).first()
    if is_flow is None and experiences.find(db, account_id, resource_id) is None:
        raise ApiError(404, NOT_FOUND)
    return []  # opencues renders no content, so it has no step images to give


def archive(entries: list[tuple[str, bytes]]) -> bytes:
    """A ZIP of the given entries (a valid, 22-byte empty archive when there are none)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zip_file:
        for name, data in entries:
            zip_file.writestr(name, data)  # PNGs are compressed already
    return buffer.getvalue()
