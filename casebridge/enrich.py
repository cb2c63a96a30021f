"""Pure enrichment: an alarm plus the site registry, the route and recent readings → a draft."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from casebridge.config import RouteRow
from casebridge.models import CaseDraft, ReadingPoint
from gateway.config import SensorConfig, SiteConfig
from stream.conditions import Vocabulary
from stream.models import Alarm

__all__ = ["RECENT_SHOWN", "draft_case"]

_BUILT_IN = Vocabulary()
#: How many of the latest readings a case shows.
RECENT_SHOWN = 12


def draft_case(
    alarm: Alarm,
    *,
    site: SiteConfig | None,
    sensor: SensorConfig | None,
    route: RouteRow,
    now: datetime,
    recent: Sequence[ReadingPoint] = (),
    sla: float | None = None,
    auto_resolve: bool = False,
    conditions: Vocabulary = _BUILT_IN,
) -> CaseDraft:
    """Where it is, who gets it, what to call it, how it developed and by when to respond.
    Missing registry entries leave gaps; they never block the case."""
    building = room = None
    if site is not None and sensor is not None:
        building, room = site.room(sensor.building, sensor.room)
    place = (room.name or room.id) if room else (sensor.room if sensor else None)
    what = conditions.title(alarm.condition)
    where = ", ".join(p for p in (place, site.name if site else alarm.site) if p)
    upto = [p for p in recent if p.ts <= alarm.ts]
    since = [p.value for p in upto if p.ts >= alarm.started_at]
    return CaseDraft(
        title=f"{what} — {where} ({alarm.sensor})",
        team=route.team,
        priority=route.priority,
        route=route.id,
        site_name=site.name if site else alarm.site,
        address=site.address if site else None,
        building=sensor.building if sensor else None,
        building_name=building.name if building else None,
        room=sensor.room if sensor else None,
        room_name=room.name if room else None,
        floor=str(room.floor) if room and room.floor is not None else None,
        asset=sensor.asset if sensor else None,
        access_notes=site.access_notes if site else None,
        contact=site.contact if site else None,
        recent=tuple(upto[-RECENT_SHOWN:]),
        min_since_start=min(since) if since else None,
        max_since_start=max(since) if since else None,
        sla_due_at=now + timedelta(seconds=sla) if sla is not None else None,
        auto_resolve=auto_resolve,
        unit="s"
        if conditions.is_duration(alarm.condition)
        else _unit(sensor, per_minute=conditions.is_rate(alarm.condition)),
    )


def _unit(sensor: SensorConfig | None, *, per_minute: bool) -> str | None:
    """The unit of the case's value: the sensor's (temperatures always in °C: the gateway
    converts), per minute for a rate."""
    if sensor is None:
        return None
    unit = "°C" if sensor.kind == "temperature" else sensor.unit
    return f"{unit}/min" if per_minute else unit
