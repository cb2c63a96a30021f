"""The case store's photos: a photo and the timeline event that shows it are written in one
transaction (nothing half-written when either fails), under a random id."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from casebridge.errors import CaseNotFoundError, PhotoError
from casebridge.models import CaseEvent, PhotoInfo, parse_case_id
from casebridge.store.rows import case_from_row, event_values, for_update
from casebridge.store.schema import case_events, case_photos, cases

if TYPE_CHECKING:
    from casebridge.photos import Photo

__all__ = ["PhotoQueries"]

_INFO = (
    case_photos.c.id,
    case_photos.c.caption,
    case_photos.c.content_type,
    case_photos.c.width,
    case_photos.c.height,
    case_photos.c.size,
    case_photos.c.uploaded_by,
    case_photos.c.uploaded_at,
)


async def _locked_case(conn: AsyncConnection, case_id: str) -> Any:
    """The case's row, locked until the transaction ends; `CaseNotFoundError` if none."""
    number = parse_case_id(case_id)
    row = None
    if number is not None:
        query = for_update(conn, select(cases).where(cases.c.number == number))
        row = (await conn.execute(query)).first()
    if row is None or case_from_row(row).id != case_id.strip().upper():
        raise CaseNotFoundError(f"no case {case_id}")
    return row


async def _recorded(conn: AsyncConnection, number: int, event: CaseEvent) -> CaseEvent:
    """`event` added to the case's timeline, the case's version bumped (its sinks mirror it)."""
    inserted = await conn.execute(insert(case_events).values(**event_values(number, event)))
    await conn.execute(
        update(cases)
        .where(cases.c.number == number)
        .values(updated_at=event.at, version=cases.c.version + 1)
    )
    key = inserted.inserted_primary_key
    return event.model_copy(update={"cursor": int(key[0]) if key else 0})


class PhotoQueries:
    """Photos on cases (a part of `SqlCaseStore`)."""

    _engine: AsyncEngine

    async def attach_photo(
        self,
        case_id: str,
        photo: Photo,
        *,
        caption: str,
        actor: str,
        now: datetime,
        per_case: int,
    ) -> tuple[CaseEvent, PhotoInfo]:
        """Attach `photo` to the case with a `photo` event; the event and what was stored.
        Raises `CaseNotFoundError`, or `PhotoError` when the case holds `per_case` photos
        already."""
        async with self._engine.begin() as conn:
            row = await _locked_case(conn, case_id)
            held = (
                await conn.execute(
                    select(func.count())
                    .select_from(case_photos)
                    .where(case_photos.c.case_number == row.number)
                )
            ).scalar_one()
            if held >= per_case:
                raise PhotoError(
                    f"{case_id} already has {held} photos (at most {per_case})",
                    status=409,
                    code="too_many",
                )
            stored = PhotoInfo(
                id=secrets.token_urlsafe(18),  # 24 characters, never guessed
                caption=caption,
                content_type=photo.content_type,
                width=photo.width,
                height=photo.height,
                size=len(photo.data),
                uploaded_by=actor,
                uploaded_at=now,
            )
            await conn.execute(
                insert(case_photos).values(
                    **stored.model_dump(),
                    case_number=row.number,
                    data=photo.data,
                    thumb=photo.thumb,
                )
            )
            event = CaseEvent(
                case_id=case_from_row(row).id,
                at=now,
                kind="photo",
                actor=actor,
                text=caption or "photo attached",
                photo=stored.id,
            )
            return await _recorded(conn, row.number, event), stored

    async def remove_photo(
        self, case_id: str, photo_id: str, *, actor: str, now: datetime, reason: str = ""
    ) -> CaseEvent:
        """Delete a photo's bytes and thumbnail for good, with a `photo_removed` event (the
        `photo` event stays, saying a photo was there); raises `CaseNotFoundError` when the
        case has no such photo."""
        async with self._engine.begin() as conn:
            row = await _locked_case(conn, case_id)
            gone = await conn.execute(
                delete(case_photos).where(
                    case_photos.c.case_number == row.number, case_photos.c.id == photo_id
                )
            )
            if gone.rowcount != 1:
                raise CaseNotFoundError(f"no photo {photo_id[:32]} on {case_id}")
            event = CaseEvent(
                case_id=case_from_row(row).id,
                at=now,
                kind="photo_removed",
                actor=actor,
                text=f"photo removed: {reason}" if reason else "photo removed",
                photo=photo_id,
            )
            return await _recorded(conn, row.number, event)

    async def photos(self, case_id: str) -> list[PhotoInfo]:
        """The case's photos, oldest first (without their bytes)."""
        number = parse_case_id(case_id)
        if number is None:
            return []
        query = (  # in the order of their timeline events (ids are random)
            select(*_INFO)
            .join(case_events, case_events.c.photo == case_photos.c.id)
            .where(case_photos.c.case_number == number)
            .order_by(case_events.c.id)
        )
        async with self._engine.connect() as conn:
            return [PhotoInfo.model_validate(r._mapping) for r in await conn.execute(query)]

    async def photo_bytes(
        self, case_id: str, photo_id: str, *, thumb: bool = False
    ) -> tuple[PhotoInfo, bytes] | None:
        """A photo of the case (or its thumbnail, always JPEG), or None."""
        number = parse_case_id(case_id)
        if number is None or len(photo_id) > 32:
            return None
        body = case_photos.c.thumb if thumb else case_photos.c.data
        query = select(*_INFO, body.label("body")).where(
            case_photos.c.case_number == number, case_photos.c.id == photo_id
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        info = PhotoInfo.model_validate({c.name: row._mapping[c.name] for c in _INFO})
        if thumb:
            info = info.model_copy(update={"content_type": "image/jpeg"})
        return info, bytes(row.body)
