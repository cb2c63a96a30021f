"""The HTTP API (FastAPI): work lists, a case with its timeline, actions, the event feed.

Bearer tokens per user; roles as in `casebridge.access.Access`. Every write is one store
transaction, so a refused or failed request leaves nothing half-written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from casebridge.access import Access, WorkList, member_of
from casebridge.auth import hash_token
from casebridge.config import TeamConfig
from casebridge.errors import CaseNotFoundError, LifecycleError, PhotoError
from casebridge.models import (
    MAX_NUMBER,
    MAX_TEXT,
    Case,
    CaseEvent,
    CaseStatus,
    PhotoInfo,
    User,
    check_text,
)
from casebridge.store import CaseFilter, CaseStore
from casebridge.uploads import (
    MAX_CAPTION,
    PhotoService,
    photo_response,
    photo_service,
    refused,
    removable,
)
from gateway.clock import Clock
from gateway.models import SLUG_PATTERN

__all__ = ["install", "router"]

_SLUG = re.compile(SLUG_PATTERN)
StatusAction = Literal["acknowledge", "start", "resolve", "close", "reopen"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: A person's text: bounded, without NUL, lone surrogates or control characters.
Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(check_text)]


class ActionBody(_Body):
    comment: Text | None = None


class AssignBody(_Body):
    user: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(check_text)]
    comment: Text | None = None


class CommentBody(_Body):
    text: Annotated[Text, Field(min_length=1)]


class CaseWithTimeline(BaseModel):
    case: Case
    timeline: list[CaseEvent]


class CaseList(BaseModel):
    work_list: WorkList
    count: int
    cases: list[Case]


class EventFeed(BaseModel):
    events: list[CaseEvent]
    next: int = Field(description="pass as `after` to continue")


class Me(BaseModel):
    user: User
    teams: list[str]
    team_members: list[str]


@dataclass(frozen=True)
class _Deps:
    store: CaseStore
    teams: tuple[TeamConfig, ...]
    clock: Clock


def _deps(request: Request) -> _Deps:
    deps: _Deps = request.app.state.husvakt
    return deps


Deps = Annotated[_Deps, Depends(_deps)]
_bearer = HTTPBearer(auto_error=False)


async def _access(
    deps: Deps, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Access:
    user = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        # an API token only: a web session's cookie value is not a bearer token
        token = hash_token(credentials.credentials)
        user = await deps.store.user_for_token(token, now=deps.clock.now())
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="a valid bearer token is required (husvakt users token USER)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Access(user, deps.teams)


Who = Annotated[Access, Depends(_access)]
Photos = Annotated[PhotoService, Depends(photo_service)]
router = APIRouter(prefix="/api/v1")


async def _readable(deps: _Deps, case_id: str, who: Access) -> Case:
    case = await deps.store.get_case(case_id)
    if case is None or not who.can_read(case):
        # a case the user may not see is indistinguishable from one that does not exist
        raise CaseNotFoundError(f"no case {case_id[:40]}")
    return case


async def _actionable(deps: _Deps, case_id: str, who: Access) -> Case:
    case = await _readable(deps, case_id, who)
    if not who.can_act(case):
        raise HTTPException(status_code=403, detail=f"role {who.user.role} cannot change cases")
    return case


async def _with_timeline(deps: _Deps, case: Case) -> CaseWithTimeline:
    return CaseWithTimeline(case=case, timeline=await deps.store.timeline(case.id))


@router.get("/me", response_model=Me, tags=["people"])
async def me(who: Who) -> Me:
    """Who the token belongs to, their teams and teammates."""
    return Me(user=who.user, teams=list(who.teams), team_members=list(who.team_members))


@router.get("/cases", response_model=CaseList, tags=["cases"])
async def list_cases(
    *,
    deps: Deps,
    who: Who,
    list_: Annotated[WorkList | None, Query(alias="list")] = None,
    site: Annotated[list[str] | None, Query()] = None,
    status_: Annotated[list[CaseStatus] | None, Query(alias="status")] = None,
    condition: Annotated[list[str] | None, Query()] = None,
) -> CaseList:
    """Work lists: `mine` (assigned to me), `team` (my teams' cases), `team-members` (assigned
    to my teammates), `all` (everything I may see; the default for dispatchers)."""
    for value in (*(site or ()), *(condition or ())):
        if not _SLUG.fullmatch(value):
            raise HTTPException(status_code=422, detail=f"not a site or condition id: {value!r}")
    chosen: WorkList = list_ or who.default_list
    narrowed = who.narrowing(chosen)
    where = CaseFilter(statuses=status_, sites=site, conditions=condition, **narrowed)
    cases = [c for c in await deps.store.list_cases(where) if who.can_read(c)]
    return CaseList(work_list=chosen, count=len(cases), cases=cases)


@router.get("/cases/{case_id}", response_model=CaseWithTimeline, tags=["cases"])
async def get_case(deps: Deps, case_id: str, who: Who) -> CaseWithTimeline:
    """A case with its whole timeline."""
    return await _with_timeline(deps, await _readable(deps, case_id, who))


@router.post("/cases/{case_id}/assign", response_model=CaseWithTimeline, tags=["actions"])
async def assign(deps: Deps, case_id: str, body: AssignBody, who: Who) -> CaseWithTimeline:
    """Assign the case to a user."""
    case = await _actionable(deps, case_id, who)
    if not member_of(deps.teams, case.team, body.user):
        raise HTTPException(
            status_code=422, detail=f"{body.user} is not a member of team {case.team}"
        )
    changed = await deps.store.act(
        case.id,
        "assign",
        actor=who.user.id,
        now=deps.clock.now(),
        assignee=body.user,
        text=body.comment,
    )
    return await _with_timeline(deps, changed)


@router.post("/cases/{case_id}/comments", response_model=CaseWithTimeline, tags=["actions"])
async def comment(deps: Deps, case_id: str, body: CommentBody, who: Who) -> CaseWithTimeline:
    """Add a comment to the timeline."""
    case = await _actionable(deps, case_id, who)
    changed = await deps.store.act(
        case.id, "comment", actor=who.user.id, now=deps.clock.now(), text=body.text
    )
    return await _with_timeline(deps, changed)


class AttachedPhoto(BaseModel):
    photo: PhotoInfo
    event: CaseEvent
    url: str
    thumbnail_url: str


@router.post(
    "/cases/{case_id}/photos",
    response_model=AttachedPhoto,
    status_code=201,
    tags=["photos"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["photo"],
                        "properties": {
                            "photo": {"type": "string", "format": "binary"},
                            "caption": {"type": "string", "maxLength": MAX_CAPTION},
                        },
                    }
                }
            },
        }
    },
)
async def attach_photo(
    request: Request, deps: Deps, case_id: str, who: Who, photos: Photos
) -> AttachedPhoto:
    """Attach a photo (multipart field `photo`: JPEG, PNG or WebP, and an optional `caption`).
    It is stored re-encoded without its metadata (EXIF position, camera) and with a
    thumbnail, and appears in the timeline as a `photo` event."""
    case = await _actionable(deps, case_id, who)
    raw, caption, _ = await photos.read_form(request)
    try:
        event, stored = await photos.attach(
            deps.store, case, raw, caption, actor=who.user.id, now=deps.clock.now()
        )
    except PhotoError as exc:
        raise refused(exc) from exc
    url = f"/api/v1/cases/{case.id}/photos/{event.photo}"
    return AttachedPhoto(photo=stored, event=event, url=url, thumbnail_url=f"{url}?thumbnail=1")


@router.get("/cases/{case_id}/photos", response_model=list[PhotoInfo], tags=["photos"])
async def list_photos(deps: Deps, case_id: str, who: Who) -> list[PhotoInfo]:
    """The case's photos, oldest first."""
    case = await _readable(deps, case_id, who)
    return await deps.store.photos(case.id)


@router.get(
    "/cases/{case_id}/photos/{photo_id}",
    tags=["photos"],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
)
async def get_photo(
    deps: Deps, case_id: str, photo_id: str, who: Who, thumbnail: bool = False
) -> Response:
    """A photo's bytes (`?thumbnail=1`: the JPEG thumbnail)."""
    case = await _readable(deps, case_id, who)
    return await photo_response(deps.store, case, photo_id, thumb=thumbnail)


@router.delete("/cases/{case_id}/photos/{photo_id}", response_model=CaseEvent, tags=["photos"])
async def remove_photo(
    deps: Deps,
    case_id: str,
    photo_id: str,
    who: Who,
    reason: Annotated[str, Query(max_length=MAX_CAPTION)] = "",
) -> CaseEvent:
    """Remove a photo for good (its bytes and thumbnail are deleted; the timeline keeps a
    `photo_removed` event with who and why). Who attached it, a dispatcher or an admin."""
    case = await _readable(deps, case_id, who)
    info = await removable(deps.store, who, case, photo_id, reason.strip())
    return await deps.store.remove_photo(
        case.id, info.id, actor=who.user.id, now=deps.clock.now(), reason=reason.strip()
    )


@router.post("/cases/{case_id}/{action}", response_model=CaseWithTimeline, tags=["actions"])
async def change_status(
    deps: Deps, case_id: str, action: StatusAction, who: Who, body: ActionBody | None = None
) -> CaseWithTimeline:
    """acknowledge, start, resolve, close or reopen; an optional comment goes on the status
    change in the timeline."""
    case = await _actionable(deps, case_id, who)
    changed = await deps.store.act(
        case.id,
        action,
        actor=who.user.id,
        now=deps.clock.now(),
        text=body.comment if body else None,
    )
    return await _with_timeline(deps, changed)


@router.get("/events", response_model=EventFeed, tags=["feed"])
async def events(
    deps: Deps,
    who: Who,
    after: Annotated[int, Query(ge=0, le=MAX_NUMBER)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventFeed:
    """Every case event after the cursor `after`, oldest first: a portal follows a case's
    progress by polling with the returned `next`."""
    batch = await deps.store.events_after(after, limit=limit)
    visible: dict[str, bool] = {}
    out = []
    for ev in batch:
        if ev.case_id not in visible:
            case = await deps.store.get_case(ev.case_id)
            visible[ev.case_id] = case is not None and who.can_read(case)
        if visible[ev.case_id]:
            out.append(ev)
    return EventFeed(events=out, next=batch[-1].cursor if batch else after)


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


async def _invalid(_request: Request, exc: Exception) -> Response:
    """422 with where and why, without echoing the input back (it may be huge, or hold lone
    surrogates that cannot be encoded — FastAPI's own handler then fails with a 500)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {"loc": [str(p)[:64] for p in e.get("loc", ())], "msg": str(e.get("msg", ""))[:300]}
        for e in errors[:20]
    ]
    body = json.dumps({"detail": detail}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(exc)})


def install(app: FastAPI, *, store: CaseStore, teams: Sequence[TeamConfig], clock: Clock) -> None:
    """The API's routes, dependencies and error answers on `app`."""
    app.state.husvakt = _Deps(store=store, teams=tuple(teams), clock=clock)
    app.add_exception_handler(CaseNotFoundError, _not_found)
    app.add_exception_handler(LifecycleError, _conflict)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.include_router(router)
