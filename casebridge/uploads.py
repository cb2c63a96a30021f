"""Photo uploads and downloads, the same for the API (bearer token) and the pages (session):
the multipart form read within bounds, the photo prepared off the event loop and stored with
its timeline event in one transaction, and served with the headers a file needs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from fastapi import HTTPException, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from casebridge.access import Access
from casebridge.config import PhotoConfig
from casebridge.errors import PhotoError
from casebridge.models import Case, CaseEvent, PhotoInfo, check_text
from casebridge.photos import PhotoDesk
from casebridge.store import CaseStore

__all__ = [
    "MAX_CAPTION",
    "UPLOAD_PATH",
    "PhotoService",
    "photo_response",
    "photo_service",
    "refused",
    "removable",
]

#: The routes that take a photo: the only ones whose body may be larger than a form's.
UPLOAD_PATH = re.compile(r"/(?:api/v1/)?cases/[^/]{1,40}/photos")
MAX_CAPTION = 500
#: What a photo's form carries besides the file (caption, CSRF token, multipart headers).
_FORM_ROOM = 64 * 1024


def _short_text(value: str, name: str) -> str:
    """A caption or a reason: at most MAX_CAPTION characters of clean text, else 400."""
    if len(value) > MAX_CAPTION:
        raise HTTPException(
            status_code=400, detail=f"the {name} is longer than {MAX_CAPTION} characters"
        )
    try:
        return check_text(value)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=f"{name}: {exc}") from exc


@dataclass(frozen=True)
class PhotoService:
    config: PhotoConfig
    desk: PhotoDesk

    @classmethod
    def of(cls, config: PhotoConfig) -> PhotoService:
        return cls(config, PhotoDesk(max_pixels=config.max_pixels))

    @property
    def body_limit(self) -> int:
        """The largest request body an upload route takes."""
        return self.config.max_bytes + _FORM_ROOM

    async def read_form(self, request: Request) -> tuple[bytes, str, dict[str, str]]:
        """The photo's bytes, its caption and the form's other text fields."""
        form = await request.form(max_files=1, max_fields=4, max_part_size=_FORM_ROOM)
        try:
            upload = form.get("photo")
            if not isinstance(upload, UploadFile):
                raise HTTPException(status_code=400, detail="the form has no file named photo")
            raw = await upload.read(self.config.max_bytes + 1)
            if len(raw) > self.config.max_bytes:
                raise HTTPException(
                    status_code=413,
                    detail=f"the photo is larger than {self.config.max_bytes} bytes",
                )
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
        finally:
            await form.close()
        caption = _short_text(fields.get("caption", "").strip(), "caption")
        return raw, caption, fields

    async def attach(
        self,
        store: CaseStore,
        case: Case,
        raw: bytes,
        caption: str,
        *,
        actor: str,
        now: datetime,
    ) -> tuple[CaseEvent, PhotoInfo]:
        """Prepare and store the photo: its timeline event and what was stored; `PhotoError`
        (with its HTTP status) when refused."""
        photo = await self.desk.prepare(raw)
        return await store.attach_photo(
            case.id, photo, caption=caption, actor=actor, now=now, per_case=self.config.per_case
        )


async def removable(
    store: CaseStore, who: Access, case: Case, photo_id: str, reason: str
) -> PhotoInfo:
    """The photo `who` may remove from `case` (404: no such photo; 403: not theirs to remove),
    after checking the reason given is clean text."""
    info = next((p for p in await store.photos(case.id) if p.id == photo_id), None)
    if info is None:
        raise HTTPException(status_code=404, detail="no such photo")
    if not who.may_remove_photo(case, info.uploaded_by):
        raise HTTPException(
            status_code=403,
            detail="only who attached a photo, a dispatcher or an admin may remove it",
        )
    _short_text(reason, "reason")
    return info


def photo_service(request: Request) -> PhotoService:
    service: PhotoService = request.app.state.husvakt_photos
    return service


def refused(exc: PhotoError) -> HTTPException:
    return HTTPException(status_code=exc.status, detail=str(exc))


async def photo_response(store: CaseStore, case: Case, photo_id: str, *, thumb: bool) -> Response:
    """A photo of a case the caller may read (checked by the caller), or 404."""
    found = await store.photo_bytes(case.id, photo_id, thumb=thumb)
    if found is None:
        raise HTTPException(status_code=404, detail="no such photo")
    info, body = found
    name = info.filename(case.id, thumb=thumb)
    return Response(
        body,
        media_type=info.content_type,
        headers={
            # shown in the browser, saved under a name of ours (never one from outside)
            "Content-Disposition": f'inline; filename="{name}"',
            "Cache-Control": "private, no-store",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )
