"""The pages: sign-in, work lists, a case, the site overview, and the live event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote_plus, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from casebridge.access import (
    STATUS_ACTIONS,
    Access,
    WorkList,
    member_of,
    status_actions,
)
from casebridge.auth import (
    csrf_token,
    hash_token,
    new_token,
    verify_sign_in,
)
from casebridge.config import TeamConfig, WebConfig
from casebridge.errors import LifecycleError, PhotoError
from casebridge.models import MAX_TEXT, OPEN_STATUSES, Case, CaseStatus, User, check_text
from casebridge.readings import local_time, manual_reading
from casebridge.reports import (
    COLUMNS,
    Period,
    Report,
    build_report,
    parse_period,
    report_csv,
    report_timezone,
    row_cells,
    trend_svg,
)
from casebridge.store import CaseFilter, CaseStore
from casebridge.store.readings import DuplicateReadingError
from casebridge.uploads import (
    MAX_CAPTION,
    PhotoService,
    photo_response,
    photo_service,
    removable,
)
from casebridge.web.chart import daily_bars_svg, readings_svg
from casebridge.web.i18n import words
from gateway.clock import Clock
from gateway.config import ManualPoint, SensorConfig, SiteConfig, format_duration
from gateway.models import SLUG_PATTERN
from stream.conditions import Vocabulary
from stream.kinds.meter import daily_consumption

__all__ = ["mount_web"]

COOKIE = "husvakt_session"
PRIORITY_ORDER = {"P1": 1, "P2": 2, "P3": 3, "P4": 4}
_env = Environment(
    loader=PackageLoader("casebridge.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


_BUILT_IN = Vocabulary()


@dataclass(frozen=True)
class WebDeps:
    store: CaseStore
    teams: tuple[TeamConfig, ...]
    sites: tuple[SiteConfig, ...]
    clock: Clock
    rule_state: Path | None = None
    web: WebConfig = field(default_factory=WebConfig)
    poll_every: float = 1.0
    conditions: Vocabulary = field(default_factory=Vocabulary)
    #: (site, sensor) → the sensor, with its site filled in
    sensors: Mapping[tuple[str, str], SensorConfig] = field(default_factory=dict)
    #: (site, sensor) of every meter a meter rule watches → its counter's rollover (or None)
    meters: Mapping[tuple[str, str], float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Session:
    who: Access
    token: str

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)


class SignInRequiredError(Exception):
    """Raised by pages that need a session; answered with a redirect to the sign-in page."""


def _deps(request: Request) -> WebDeps:
    deps: WebDeps = request.app.state.husvakt_web
    return deps


Deps = Annotated[WebDeps, Depends(_deps)]


async def _user_of(deps: WebDeps, token: str | None) -> User | None:
    """The user of a live web session (an API token is not one)."""
    if not token or len(token) > 200:
        return None
    return await deps.store.user_for_session(
        hash_token(token), now=deps.clock.now(), idle=deps.web.session_idle
    )


async def _session(request: Request, deps: Deps) -> Session:
    token = request.cookies.get(COOKIE)
    user = await _user_of(deps, token)
    if token is None or user is None:
        raise SignInRequiredError
    return Session(Access(user, deps.teams), token)


Signed = Annotated[Session, Depends(_session)]
Photos = Annotated[PhotoService, Depends(photo_service)]


def _render(
    name: str,
    *,
    language: str = "en",
    status_code: int = 200,
    vocabulary: Vocabulary | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page in `language`: `t` its words, `ct` the conditions' titles."""
    titles = (vocabulary or _BUILT_IN).titles(language)
    html = _env.get_template(name).render(t=words(language), ct=titles, lang=language, **context)
    return HTMLResponse(html, status_code=status_code)


def _clean(text: str, name: str, *, limit: int = MAX_TEXT) -> str:
    """A form field as the API takes it: bounded, no NUL, lone surrogates or control chars."""
    if len(text) > limit:
        raise HTTPException(status_code=400, detail=f"{name} is longer than {limit} characters")
    try:
        return check_text(text)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=f"{name}: {exc}") from exc


def _check_csrf(session: Session, sent: str) -> None:
    if sent != session.csrf:
        raise HTTPException(status_code=403, detail="the form is stale or foreign; reload it")


def _age(then: datetime, now: datetime) -> str:
    return format_duration((now - then).total_seconds())


def _sort(cases: list[Case], sort: str) -> list[Case]:
    if sort == "age":
        return sorted(cases, key=lambda c: c.opened_at)
    return sorted(
        cases,
        key=lambda c: (
            PRIORITY_ORDER.get(c.draft.priority, 9),
            c.severity != "critical",
            c.opened_at,
        ),
    )


router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def home() -> RedirectResponse:
    return RedirectResponse("/cases", status_code=303)


#: Failed sign-ins that cost nothing, per (user, address) and per address (an office behind
#: one address has many users); after them, each further attempt waits twice as long as the one
#: before (1 s, 2 s, 4 s, … at most MAX_WAIT) — a growing delay, never a lock a guesser elsewhere
#: could put on a real user.
FREE_FAILURES = {"user": 3, "addr": 20}
MAX_WAIT = 900.0
#: Failures are forgotten after this long without one.
FORGET_FAILURES = 3600.0


async def _wait(deps: WebDeps, keys: list[str], now: datetime) -> float:
    """Seconds until a sign-in under these keys is taken again (0: now)."""
    wait = 0.0
    for key, (count, last) in (await deps.store.sign_in_failures(keys)).items():
        free = FREE_FAILURES[key.split(":", 1)[0]]
        if last > now:
            continue  # the clock went back: a failure "from the future" delays nobody for long
        if count > free:
            delay = min(2.0 ** (count - free - 1), MAX_WAIT)
            wait = max(wait, delay - (now - last).total_seconds())
    return wait


@router.get("/login", response_class=HTMLResponse)
async def login_page(next: str = "/cases", error: str = "") -> HTMLResponse:
    return _render("login.html", next=next, error=error)


def _is_clean(text: str) -> bool:
    try:
        check_text(text)
    except ValueError:
        return False
    return True


def _same_origin(request: Request) -> None:
    """Login CSRF: a sign-in form posted from another site (which would sign the victim in as
    the attacker) is refused. Browsers send `Origin` with every form POST (else `Referer`)."""
    own = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    referer = request.headers.get("referer")
    if origin is not None:
        if origin == own:
            return
    elif referer is not None and (referer == own or referer.startswith(own + "/")):
        return
    raise HTTPException(status_code=403, detail="sign in from husvakt's own sign-in page")


@router.post("/login")
async def login(
    request: Request,
    deps: Deps,
    user: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/cases",
) -> Response:
    _same_origin(request)
    uid = user.strip().lower()
    if len(uid) > 64 or len(password) > 1024 or not _is_clean(uid):
        query = urlencode({"next": next[:200], "error": "1"})  # as any failed sign-in
        return RedirectResponse(f"/login?{query}", status_code=303)
    now = deps.clock.now()
    address = request.client.host if request.client else "-"
    pair, by_address = f"user:{uid}|{address}", f"addr:{address}"
    if await _wait(deps, [pair, by_address], now) > 0:
        query = urlencode({"next": next, "error": "locked"})
        return RedirectResponse(f"/login?{query}", status_code=303)
    found = await deps.store.get_user(uid)
    stored = await deps.store.password_hash(found.id) if found else None
    good = await asyncio.to_thread(verify_sign_in, password, stored)
    if found is None or not good:
        # an unknown name counts only against the address: junk names grow no table
        keys = [by_address, pair] if found is not None else [by_address]
        await deps.store.sign_in_failed(keys, now=now, forget=FORGET_FAILURES)
        query = urlencode({"next": next, "error": "1"})
        return RedirectResponse(f"/login?{query}", status_code=303)
    await deps.store.sign_in_succeeded(pair)
    token = new_token()
    until = now + timedelta(seconds=deps.web.session_max)
    await deps.store.add_session(found.id, hash_token(token), now=now, expires_at=until)
    target = next if next.startswith("/") and not next.startswith("//") else "/cases"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="lax",
        max_age=int(deps.web.session_max),
        secure=deps.web.secure_cookie or request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(deps: Deps, session: Signed, csrf: Annotated[str, Form()]) -> Response:
    _check_csrf(session, csrf)
    await deps.store.end_session(hash_token(session.token))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/cases", response_class=HTMLResponse)
async def work_list(
    *,
    deps: Deps,
    session: Signed,
    view: str = "",
    site: str = "",
    status: str = "open",
    condition: str = "",
    severity: str = "",
    sort: str = "priority",
    fragment: Annotated[bool, Query()] = False,
) -> HTMLResponse:
    who = session.who
    chosen: WorkList = next((w for w in who.work_lists if w == view), who.default_list)
    statuses: list[CaseStatus] | None = list(OPEN_STATUSES) if status == "open" else None
    if status not in ("open", "any", ""):
        statuses = [status]  # type: ignore[list-item]
    open_cases = [
        c
        for c in await deps.store.list_cases(CaseFilter(statuses=list(OPEN_STATUSES)))
        if who.can_read(c)
    ]
    counts = {}
    for name in who.work_lists:
        in_view = [c for c in open_cases if who.in_list(name, c)]
        counts[name] = (len(in_view), sum(c.status == "new" for c in in_view))
    where = CaseFilter(
        statuses=statuses,
        sites=[site] if site else None,
        conditions=[condition] if condition else None,
        **who.narrowing(chosen),
    )
    cases = [c for c in await deps.store.list_cases(where) if who.can_read(c)]
    if severity:
        cases = [c for c in cases if c.severity == severity]
    now = deps.clock.now()
    context: dict[str, Any] = {
        "session": session,
        "view": chosen,
        "lists": who.work_lists,
        "counts": counts,
        "cases": _sort(cases, sort),
        "age": lambda c: _age(c.opened_at, now),
        "filters": {
            "site": site,
            "status": status,
            "condition": condition,
            "severity": severity,
            "sort": sort,
        },
        "sites": [s.id for s in deps.sites],
        "conditions": deps.conditions.names(),
        "query": lambda **over: urlencode(
            {"view": chosen, "site": site, "status": status, "condition": condition}
            | {"severity": severity, "sort": sort}
            | over
        ),
    }
    template = "cases_fragment.html" if fragment else "cases.html"
    return _render(template, language=who.user.language, vocabulary=deps.conditions, **context)


def _value_unit(case: Case, conditions: Vocabulary) -> str | None:
    """The unit of a case's value: a threshold's is its sensor's (cases from before units:
    °C), a rate's per minute; other conditions' values have none to show."""
    if conditions.is_threshold(case.condition):
        return case.draft.unit or "°C"
    return case.draft.unit if conditions.is_rate(case.condition) else None


def _site(deps: WebDeps, site_id: str) -> SiteConfig | None:
    return next((s for s in deps.sites if s.id == site_id), None)


@router.get("/cases/{case_id}", response_class=HTMLResponse)
async def case_page(deps: Deps, session: Signed, case_id: str) -> HTMLResponse:
    who = session.who
    case = await deps.store.get_case(case_id)
    if case is None or not who.can_read(case):  # one answer: whether it exists is not theirs
        return _render(
            "error.html", language=who.user.language, status_code=404, message="not_found"
        )
    return await _case_view(deps, session, case)


async def _case_view(
    deps: WebDeps, session: Session, case: Case, *, error: str = "", status_code: int = 200
) -> HTMLResponse:
    who = session.who
    language = who.user.language
    timeline = await deps.store.timeline(case.id)
    site = _site(deps, case.site)
    tz = site.timezone if site else "UTC"
    t = words(language)
    chart = readings_svg(
        [(p.ts, p.value) for p in case.draft.recent],
        threshold=case.threshold if deps.conditions.is_threshold(case.condition) else None,
        label=f"{t['readings']}: {case.sensor}",
        tz=tz,
    )
    address = case.draft.address
    team = next((tm for tm in deps.teams if tm.id == case.team), None)
    photos = {p.id: p for p in await deps.store.photos(case.id)}
    return _render(
        "case.html",
        language=language,
        status_code=status_code,
        vocabulary=deps.conditions,
        session=session,
        case=case,
        timeline=list(reversed(timeline)),
        chart=chart,
        map_url=f"https://www.openstreetmap.org/search?query={quote_plus(address)}"
        if address
        else None,
        can_act=who.can_act(case),
        # a threshold's value is in the sensor's unit (cases from before units: °C)
        unit=_value_unit(case, deps.conditions),
        actions=status_actions(case),
        members=sorted(team.members) if team else [],
        age=_age(case.opened_at, deps.clock.now()),
        tz=tz,
        local=lambda at: at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M"),
        error=error,
        max_caption=MAX_CAPTION,
        photos=photos,
        may_remove=lambda info: who.may_remove_photo(case, info.uploaded_by),
    )


async def _case_to_act_on(deps: WebDeps, session: Session, case_id: str) -> Case:
    who = session.who
    case = await deps.store.get_case(case_id)
    if case is None or not who.can_read(case):
        raise HTTPException(status_code=404, detail=f"no case {case_id[:40]}")
    if not who.can_act(case):
        raise HTTPException(status_code=403, detail=f"role {who.user.role} cannot change cases")
    return case


@router.post("/cases/{case_id}/photos")
async def attach_photo(
    request: Request, deps: Deps, session: Signed, case_id: str, photos: Photos
) -> Response:
    """A photo from the phone's camera (a plain multipart form: no script needed)."""
    raw, caption, fields = await photos.read_form(request)
    _check_csrf(session, fields.get("csrf", ""))
    case = await _case_to_act_on(deps, session, case_id)
    try:
        await photos.attach(
            deps.store, case, raw, caption, actor=session.who.user.id, now=deps.clock.now()
        )
    except PhotoError as exc:
        said = words(session.who.user.language).get(f"photo_{exc.code}")
        error = f"{said} ({exc})" if said else str(exc)
        return await _case_view(deps, session, case, error=error, status_code=exc.status)
    return RedirectResponse(f"/cases/{case.id}#timeline-h", status_code=303)


@router.post("/cases/{case_id}/photos/{photo_id}/remove")
async def remove_photo(
    *,
    deps: Deps,
    session: Signed,
    case_id: str,
    photo_id: str,
    csrf: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Remove a photo for good (who attached it, a dispatcher or an admin)."""
    _check_csrf(session, csrf)
    case = await _case_to_act_on(deps, session, case_id)
    info = await removable(deps.store, session.who, case, photo_id, reason.strip())
    await deps.store.remove_photo(
        case.id, info.id, actor=session.who.user.id, now=deps.clock.now(), reason=reason.strip()
    )
    return RedirectResponse(f"/cases/{case.id}#timeline-h", status_code=303)


@router.get("/cases/{case_id}/photos/{photo_id}")
async def photo(deps: Deps, session: Signed, case_id: str, photo_id: str) -> Response:
    return await _photo(deps, session, case_id, photo_id, thumb=False)


@router.get("/cases/{case_id}/photos/{photo_id}/thumb")
async def photo_thumb(deps: Deps, session: Signed, case_id: str, photo_id: str) -> Response:
    return await _photo(deps, session, case_id, photo_id, thumb=True)


async def _photo(
    deps: WebDeps, session: Session, case_id: str, photo_id: str, *, thumb: bool
) -> Response:
    """Only to those who may read the case; to anyone else as if there were no such file."""
    case = await deps.store.get_case(case_id)
    if case is None or not session.who.can_read(case):
        raise HTTPException(status_code=404, detail="no such photo")
    return await photo_response(deps.store, case, photo_id, thumb=thumb)


@router.post("/cases/{case_id}/act")
async def act(
    *,
    deps: Deps,
    session: Signed,
    case_id: str,
    action: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    comment: Annotated[str, Form()] = "",
    assignee: Annotated[str, Form()] = "",
) -> Response:
    _check_csrf(session, csrf)
    _clean(comment, "comment")
    _clean(assignee, "assignee", limit=64)
    who = session.who
    case = await _case_to_act_on(deps, session, case_id)
    if action not in (*STATUS_ACTIONS, "assign", "comment"):
        raise HTTPException(status_code=400, detail=f"no action {action!r}")
    if action == "assign" and not member_of(deps.teams, case.team, assignee):
        raise HTTPException(status_code=400, detail=f"{assignee} is not in team {case.team}")
    try:
        await deps.store.act(
            case.id,
            action,  # type: ignore[arg-type]
            actor=who.user.id,
            now=deps.clock.now(),
            assignee=assignee or None,
            text=comment.strip() or None,
        )
    except LifecycleError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    return RedirectResponse(f"/cases/{case.id}", status_code=303)


def _gateway_contacts(path: Path | None) -> dict[str, list[tuple[str, datetime | None]]]:
    """Each site's gateways and when the rule engine last heard from them (its state file)."""
    if path is None:
        return {}
    from stream.state import gateway_contacts  # noqa: PLC0415 - only this page reads it

    return gateway_contacts(path)


@router.get("/sites", response_class=HTMLResponse)
async def sites_page(deps: Deps, session: Signed) -> HTMLResponse:
    who = session.who
    if not who.may_see_sites:
        return _render("error.html", language=who.user.language, status_code=404, message="no_page")
    open_cases = [
        c
        for c in await deps.store.list_cases(CaseFilter(statuses=list(OPEN_STATUSES)))
        if who.can_read(c)
    ]
    contacts = await asyncio.to_thread(_gateway_contacts, deps.rule_state)
    now = deps.clock.now()
    rows = [
        {
            "site": site,
            "cases": _sort([c for c in open_cases if c.site == site.id], "priority"),
            "gateways": [
                (gw, _age(at, now) if at else None) for gw, at in contacts.get(site.id, [])
            ],
        }
        for site in deps.sites
    ]
    return _render(
        "sites.html",
        language=who.user.language,
        vocabulary=deps.conditions,
        session=session,
        rows=rows,
    )


#: How many days of a meter's consumption the site page shows.
CHART_DAYS = 28


@router.get("/sites/{site_id}", response_class=HTMLResponse)
async def site_page(deps: Deps, session: Signed, site_id: str, kept: str = "") -> HTMLResponse:
    """A site's sensors with their latest values, each meter's consumption per day, and the
    form for a reading entered by hand."""
    who = session.who
    site = _site(deps, site_id)
    if site is None:
        return _render("error.html", language=who.user.language, status_code=404, message="no_page")
    return await _site_view(deps, session, site, kept=kept[:40])


async def _site_view(
    deps: WebDeps,
    session: Session,
    site: SiteConfig,
    *,
    kept: str = "",
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    who, now = session.who, deps.clock.now()
    zone = ZoneInfo(site.timezone)
    latest = await deps.store.latest_readings(site.id)
    sensors = sorted(
        (s for (sid, _), s in deps.sensors.items() if sid == site.id), key=lambda s: s.id
    )
    rows, charts = [], []
    for sensor in sensors:
        room = site.room(sensor.building, sensor.room)[1] if sensor.building else None
        last = latest.get(sensor.id)
        rows.append(
            {
                "sensor": sensor,
                "room": room.name if room else (sensor.room or ""),
                "last": last,
                "age": _age(last.ts, now) if last else None,
                "by_hand": isinstance(sensor.source, ManualPoint),
            }
        )
        key = (site.id, sensor.id)
        if key in deps.meters:
            since = now - timedelta(days=CHART_DAYS + 1)
            points = await deps.store.readings_between(site.id, since, now, sensors=[sensor.id])
            days = daily_consumption(
                [(p.ts, p.value) for p in points], timezone=site.timezone, rollover=deps.meters[key]
            )
            shown = sorted(days.items())[-CHART_DAYS:]
            label = f"{sensor.id}: {words(who.user.language)['per_day']} ({sensor.unit})"
            charts.append((sensor, daily_bars_svg(shown, unit=sensor.unit, label=label), shown))
    return _render(
        "site.html",
        language=who.user.language,
        status_code=status_code,
        vocabulary=deps.conditions,
        session=session,
        site=site,
        rows=rows,
        charts=charts,
        may_enter=who.may_enter_readings,
        local=lambda at: at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        kept=kept,
        error=error,
    )


@router.post("/sites/{site_id}/readings")
async def enter_reading(
    *,
    deps: Deps,
    session: Signed,
    site_id: str,
    sensor: Annotated[str, Form(max_length=64)],
    value: Annotated[str, Form(max_length=40)],
    csrf: Annotated[str, Form()],
    at: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """A reading entered by hand: checked, kept, and evaluated by the rules like any other."""
    _check_csrf(session, csrf)
    who = session.who
    site = _site(deps, site_id)
    if site is None:
        raise HTTPException(status_code=404, detail=f"no site {site_id[:64]}")
    if not who.may_enter_readings:
        raise HTTPException(status_code=403, detail=f"role {who.user.role} enters no readings")
    now = deps.clock.now()
    try:
        number = _number(value)
        when = now if not at.strip() else local_time(at, site.timezone)
        reading = manual_reading(
            deps.sensors, site=site.id, sensor=sensor, value=number, at=when,
            actor=who.user.id, now=now,
        )  # fmt: skip
        await deps.store.add_manual_reading(reading)
    except (ValueError, DuplicateReadingError) as exc:
        return await _site_view(deps, session, site, error=str(exc), status_code=400)
    return RedirectResponse(f"/sites/{site.id}?kept={quote_plus(sensor)}", status_code=303)


def _number(text: str) -> float:
    """A number as a person types it (a decimal comma too)."""
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a number") from None


def _report_period(deps: WebDeps, first: str, last: str) -> Period:
    """The period the form asks for: by default from the first day of the month two months
    back to today, in the sites' time zone."""
    zone = report_timezone([s.timezone for s in deps.sites])
    today = deps.clock.now().astimezone(ZoneInfo(zone)).date()
    back = (today.year * 12 + today.month - 1) - 2
    default_first = date(back // 12, back % 12 + 1, 1)
    return parse_period(
        first.strip() or default_first.isoformat(), last.strip() or today.isoformat(), zone
    )


@dataclass(frozen=True)
class _ReportQuery:
    """What the reports form asks for (empty: the default period, every site and team)."""

    first: str
    last: str
    site: str
    team: str

    def query(self, period: Period) -> dict[str, str]:
        chosen = {"from": period.first.isoformat(), "to": period.last.isoformat()}
        return chosen | {k: v for k, v in (("site", self.site), ("team", self.team)) if v}


#: a site's or team's id, or nothing (every one)
_SLUG_OR_NONE = f"^$|{SLUG_PATTERN}"


def _report_query(
    first: Annotated[str, Query(alias="from", max_length=40)] = "",
    last: Annotated[str, Query(alias="to", max_length=40)] = "",
    site: Annotated[str, Query(max_length=64, pattern=_SLUG_OR_NONE)] = "",
    team: Annotated[str, Query(max_length=64, pattern=_SLUG_OR_NONE)] = "",
) -> _ReportQuery:
    return _ReportQuery(first, last, site, team)


ReportAsk = Annotated[_ReportQuery, Depends(_report_query)]


async def _report(deps: WebDeps, ask: _ReportQuery) -> Report:
    period = _report_period(deps, ask.first, ask.last)
    return await build_report(
        deps.store,
        period,
        now=deps.clock.now(),
        sites=[ask.site] if ask.site else None,
        teams=[ask.team] if ask.team else None,
    )


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(deps: Deps, session: Signed, ask: ReportAsk) -> HTMLResponse:
    """Cases of a period per team, site and condition, and the month trend (dispatchers and
    admins); the same figures as `husvakt report` and the CSV download."""
    who = session.who
    language = who.user.language
    if not who.may_see_reports:
        return _render("error.html", language=language, status_code=404, message="no_page")
    t = words(language)
    try:
        report = await _report(deps, ask)
    except ValueError as exc:
        return _render(
            "error.html", language=language, status_code=400, message="bad_period", detail=str(exc)
        )
    return _render(
        "reports.html",
        language=language,
        vocabulary=deps.conditions,
        session=session,
        report=report,
        cells=row_cells,
        columns=COLUMNS,
        trend=trend_svg(
            report,
            label=f"{t['trend']} {report.period.first} – {report.period.last}",
            names=(t["r_opened"], t["r_sla_breached"], t["r_false_alarms"]),
        ),
        sites=[s.id for s in deps.sites],
        teams=[tm.id for tm in deps.teams],
        chosen={"site": ask.site, "team": ask.team},
        csv_url=f"/reports.csv?{urlencode(ask.query(report.period))}",
    )


@router.get("/reports.csv")
async def reports_csv(deps: Deps, session: Signed, ask: ReportAsk) -> Response:
    if not session.who.may_see_reports:
        raise HTTPException(status_code=404, detail="no such page")
    try:
        report = await _report(deps, ask)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    name = f"husvakt-report-{report.period.first}-{report.period.last}.csv"
    return Response(
        report_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/live")
async def live(request: Request, deps: Deps, session: Signed) -> StreamingResponse:
    """Server-sent events: one `case` event per changed case the user may see."""
    who = session.who
    cursor = await deps.store.latest_cursor()

    async def stream() -> AsyncIterator[bytes]:
        nonlocal cursor
        yield b"retry: 2000\n\n"
        while not await request.is_disconnected():
            if await _user_of(deps, session.token) is None:
                yield b"event: signed-out\ndata: {}\n\n"  # the session ended: so does the stream
                return
            batch = await deps.store.events_after(cursor, limit=500)
            seen: set[str] = set()
            for ev in batch:
                cursor = ev.cursor
                if ev.case_id in seen:
                    continue
                seen.add(ev.case_id)
                case = await deps.store.get_case(ev.case_id)
                if case is not None and who.can_read(case):
                    body = json.dumps({"case": case.id, "status": case.status, "kind": ev.kind})
                    yield f"event: case\ndata: {body}\n\n".encode()
            if not batch:
                yield b": keep-alive\n\n"
                await asyncio.sleep(deps.poll_every)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _to_login(request: Request, _exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)


def mount_web(app: FastAPI, deps: WebDeps) -> None:
    app.state.husvakt_web = deps
    app.add_exception_handler(SignInRequiredError, _to_login)
    app.include_router(router)
    static = Path(__file__).parent / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")
