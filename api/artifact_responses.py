"""How one artifact is sent: from a folder, streamed from object storage, or by a redirect.

Artifacts are content generated code wrote (an HTML report, an SVG), so they are served with
headers that keep anything in them from running in the API's origin or being sniffed into
another type. Streaming through the API keeps those headers whatever the storage. A presigned
redirect (STORAGE_PRESIGN_DOWNLOADS) spares the API the bytes but loses them: the store answers
the browser directly, with only the content type and disposition the URL asks for, so a report
opened from it is an ordinary page of the store's origin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import BinaryIO
from urllib.parse import quote

from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from activities.artifacts import ArtifactStore, content_type_for

# Artifacts are content generated code wrote (an HTML report, an SVG) and are served so that
# nothing in them can run in this origin or be sniffed into another type.
ARTIFACT_SECURITY_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; "
    "style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}
INLINE_TYPES = frozenset(
    {"image/png", "image/jpeg", "text/html", "text/plain", "text/markdown", "application/json"}
)
PRESIGNED_URL_SECONDS = 300
_CHUNK = 256 * 1024


async def artifact_response(
    store: ArtifactStore, workflow_id: str, name: str, *, presign: bool
) -> Response:
    """The response for one artifact; ArtifactNotFound when there is none by that name."""
    media_type = content_type_for(name)
    disposition = "inline" if media_type in INLINE_TYPES else "attachment"
    filename = PurePosixPath(name).name
    if store.root is not None:  # a folder: sendfile, ranges and ETags come with FileResponse
        path = await asyncio.to_thread(store.resolve, workflow_id, name)
        return FileResponse(
            path,
            media_type=media_type,
            filename=filename,
            headers=ARTIFACT_SECURITY_HEADERS,
            content_disposition_type=disposition,
        )
    if presign:
        url = await asyncio.to_thread(
            store.presigned_url, workflow_id, name, expires_seconds=PRESIGNED_URL_SECONDS
        )
        if url is not None:
            return RedirectResponse(url, status_code=307)
    handle, size = await asyncio.to_thread(store.open, workflow_id, name)
    headers = {
        **ARTIFACT_SECURITY_HEADERS,
        "Content-Length": str(size),
        "Content-Disposition": _disposition(disposition, filename),
    }
    # A sync iterator: Starlette reads it in its thread pool, so the event loop never blocks.
    return StreamingResponse(_chunks(handle), media_type=media_type, headers=headers)


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _disposition(kind: str, filename: str) -> str:
    # As Starlette's FileResponse writes it: RFC 6266's filename* for names that need escaping.
    quoted = quote(filename)
    if quoted != filename:
        return f"{kind}; filename*=utf-8''{quoted}"
    return f'{kind}; filename="{filename}"'
