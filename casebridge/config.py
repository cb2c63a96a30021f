"""Teams, people's duties, the routing table, notifications and the case store, as configured."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from gateway.config import Duration
from gateway.models import Frozen, Slug, UtcTime

__all__ = [
    "ROUTE_ORDER",
    "CaseStoreConfig",
    "EscalationConfig",
    "NotifyConfig",
    "OnCallConfig",
    "PhotoConfig",
    "RouteRow",
    "SmtpConfig",
    "TeamConfig",
    "WebhookConfig",
    "WebhookUrl",
    "checked_url",
    "routing_problems",
    "webhook_url",
]

#: Routing match fields from most to least specific. `window` is a row's time window.
ROUTE_ORDER = ("sensor", "room", "building", "site", "condition", "severity", "kind", "window")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class OnCallConfig(Frozen):
    """A rotation: `rotation[0]` is on call for `shift` from `start`, then the next, and so on."""

    rotation: tuple[Slug, ...] = Field(min_length=1)
    shift: Duration = 7 * 86400.0
    start: UtcTime = datetime.fromisoformat("2026-01-05T07:00:00+00:00")


class EscalationConfig(Frozen):
    """When nobody acknowledges within `after`, notify the next person in `chain`."""

    after: Duration = 900.0
    chain: tuple[Slug, ...] = ()


def checked_url(value: str, schemes: tuple[str, ...], what: str) -> str:
    """`value` if it is a URL of one of `schemes` with a host and nothing a request could be
    split or fooled by (spaces, control characters, a user name); else ValueError."""
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"{what} starts with {' or '.join(s + '://' for s in schemes)} and a host")
    if any(not ch.isprintable() or ch.isspace() for ch in value):
        raise ValueError(f"{what} may not contain spaces or control characters")
    if parts.username or parts.password:
        raise ValueError(f"{what} may not hold a user name or password")
    return value


def webhook_url(value: str) -> str:
    """A webhook's URL: http or https (a team's, or a sink's)."""
    return checked_url(value, ("http", "https"), "a webhook url")


#: A webhook's URL: http or https (a team's, or a sink's).
WebhookUrl = Annotated[str, AfterValidator(webhook_url)]


class WebhookConfig(Frozen):
    """A signed JSON POST per case event; the HMAC-SHA256 secret is read from `secret_file`."""

    url: WebhookUrl
    secret_file: Path | None = None


class TeamConfig(Frozen):
    id: Slug
    name: str
    members: tuple[Slug, ...] = ()
    on_call: OnCallConfig | None = None
    escalation: EscalationConfig = EscalationConfig()
    webhook: WebhookConfig | None = None


class RouteRow(Frozen):
    """One row of the routing table: the matching fields (omitted = any) → team and priority.
    A row that names no field is the fallback; the table must have one.

    `days` and `hours` make a time window in the site's time zone, e.g. nights
    (`hours: "18:00-07:00"`) or weekends (`days: [sat, sun]`); a row with a window is more
    specific than the same row without one.
    """

    id: Slug
    site: Slug | None = None
    building: Slug | None = None
    room: Slug | None = None
    sensor: Slug | None = None
    condition: Slug | None = None
    severity: Literal["warning", "critical"] | None = None
    kind: Slug | None = None
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] | None = None
    hours: str | None = None
    team: Slug
    priority: Literal["P1", "P2", "P3", "P4"] = "P3"

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None and not _HOURS.match(value):
            raise ValueError(f"{value!r} is not a time window; write e.g. 18:00-07:00")
        return value

    def criteria(self) -> Mapping[str, str]:
        fields = {f: getattr(self, f) for f in ROUTE_ORDER if f != "window"}
        found = {f: v for f, v in fields.items() if v is not None}
        if self.days is not None or self.hours is not None:
            found["window"] = "in"
        return found

    def in_window(self, local: datetime) -> bool:
        """Whether a site-local time falls in this row's window (always, without one).

        `days` name the day a window starts on: `days: [fri], hours: "18:00-07:00"` covers
        Friday 18:00 until Saturday 07:00.
        """

        def on(day: int) -> bool:
            return self.days is None or DAYS[day % 7] in self.days

        day, now = local.weekday(), local.time()
        if self.hours is None:
            return on(day)
        start, end = self._bounds()
        if start < end:
            return start <= now < end and on(day)
        return (now >= start and on(day)) or (now < end and on(day - 1))

    def _bounds(self) -> tuple[time, time]:
        assert self.hours is not None
        match = _HOURS.match(self.hours)
        assert match is not None, "validated"
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        end = time.max if h2 == 24 else time(h2, m2)
        return time(h1, m1), end


Priority = Literal["P1", "P2", "P3", "P4"]
#: Time to respond per priority, from when the case opens.
DEFAULT_SLA: dict[Priority, float] = {
    "P1": 3600.0,
    "P2": 4 * 3600.0,
    "P3": 86400.0,
    "P4": 3 * 86400.0,
}


class SmtpConfig(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = "husvakt@localhost"
    username: str | None = None
    password_file: Path | None = None
    starttls: bool = False
    timeout: Duration = 10.0


class NotifyConfig(Frozen):
    """How people are told. Without `smtp`, no e-mail is sent (the case is still opened)."""

    smtp: SmtpConfig | None = None
    base_url: str = Field(default="http://127.0.0.1:8080", description="links in notifications")
    check_every: Duration = 5.0


class WebConfig(Frozen):
    """Web sign-in: a session ends after `session_idle` without use, and `session_max` after
    sign-in at the latest (both checked by the server). `secure_cookie`: mark the session cookie
    Secure (it is anyway when the page was asked for over https, also behind a proxy that says
    so with X-Forwarded-Proto)."""

    session_idle: Duration = 12 * 3600.0
    session_max: Duration = 7 * 86400.0
    secure_cookie: bool = False


class PhotoConfig(Frozen):
    """Photos on cases: the largest upload taken (bytes), how many one case may hold, and the
    most pixels an image may have (a small file can unpack to gigabytes)."""

    max_bytes: int = Field(default=15 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    per_case: int = Field(default=30, ge=1, le=1000)
    max_pixels: int = Field(default=50_000_000, ge=10_000, le=200_000_000)


class CaseStoreConfig(Frozen):
    """Where cases live: a SQLite file (default) or a database `url` (PostgreSQL in production,
    `postgresql+asyncpg://user@host/db`). A relative sqlite path is relative to the config file."""

    sqlite: Path = Field(default=Path("husvakt-cases.db"))
    url: str | None = None
    reopen_window: Duration = 86400.0
    sla: dict[Priority, Duration] = Field(default_factory=lambda: dict(DEFAULT_SLA))
    keep_readings: Duration = Field(
        default=400 * 86400.0,
        description="how long kept readings stay (a device's per minute, and those by hand)",
    )
    photos: PhotoConfig = Field(default_factory=PhotoConfig)

    @model_validator(mode="after")
    def _url_scheme(self) -> Self:
        if self.url is not None and not self.url.startswith(
            ("postgresql+asyncpg://", "sqlite+aiosqlite://")
        ):
            raise ValueError("url must start with postgresql+asyncpg:// (or sqlite+aiosqlite://)")
        return self


def routing_problems(
    routes: Sequence[RouteRow], teams: Sequence[TeamConfig]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Unknown teams, duplicate ids, a missing fallback, and ambiguous rows.

    Every routing fact is single-valued, so two rows without windows tie for a case only when
    they name the same fields with the same values; rows with windows tie when, in addition,
    their windows are identical.
    """
    team_ids = {t.id for t in teams}
    seen_ids: dict[str, int] = {}
    seen: dict[tuple[object, ...], int] = {}
    fallbacks = 0
    for i, row in enumerate(routes):
        if row.id in seen_ids:
            yield (
                ("routing", i, "id"),
                f"route id {row.id!r} is already used by routing[{seen_ids[row.id]}]",
            )
        seen_ids.setdefault(row.id, i)
        if row.team not in team_ids:
            yield ("routing", i, "team"), f"no team {row.team!r} in 'teams'"
        criteria = row.criteria()
        if not criteria:
            fallbacks += 1
        key = (tuple(sorted(criteria.items())), row.days, row.hours)
        if key in seen:
            yield ("routing", i), f"matches exactly what routing[{seen[key]}] matches (ambiguous)"
        seen.setdefault(key, i)
    if not routes:
        yield ("routing",), "the routing table is empty; add at least a fallback row with a team"
    elif fallbacks == 0:
        yield ("routing",), "the routing table needs a fallback row (one that names no match field)"
    for i, team in enumerate(teams):
        for field in ("members",):
            if len(set(getattr(team, field))) != len(getattr(team, field)):
                yield ("teams", i, field), "a member is listed twice"
