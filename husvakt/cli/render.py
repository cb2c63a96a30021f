"""What the commands print, apart from what they do: plain text for a terminal (each line goes
through `say`, which strips control sequences) or JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from casebridge.models import Case, CaseEvent, User
from husvakt.config import HusvaktConfig

if TYPE_CHECKING:
    from casebridge.routing import Explanation
    from gateway.config import SensorConfig
    from gateway.quarantine import Entry as QuarantineEntry
    from stream.config import RuleBase
    from stream.explain import ConditionExplanation

__all__ = [
    "case_json",
    "case_text",
    "config_summary",
    "quarantine_entry",
    "quarantine_json",
    "quarantine_table",
    "routing_text",
    "rules_text",
    "user_line",
]


def config_summary(path: Path, config: HusvaktConfig) -> str:
    gw = config.gateway
    sources = (
        f"{len(gw.mqtt_brokers)} MQTT broker(s), {len(gw.modbus_devices)} Modbus device(s), "
        f"{len(gw.serial_ports)} serial port(s)"
        if gw
        else "no gateway"
    )
    rooms = sum(len(b.rooms) for s in config.sites for b in s.buildings)
    return (
        f"{path}: OK\n"
        f"  sites: {len(config.sites)} ({rooms} rooms)\n"
        f"  gateway: {gw.id + ' at ' + gw.site if gw else '-'}; {sources}\n"
        f"  sensors: {len(config.sensors)}\n"
        f"  rules: {len(config.rules)}; routing rows: {len(config.routing)}; "
        f"teams: {len(config.teams)}\n"
        + (
            f"  case store: {config.cases.sqlite}"
            if config.routing
            else "  cases: none here — a file for `husvakt gateway` alone"
        )
    )


def case_json(case: Case, events: Sequence[CaseEvent]) -> str:
    payload = {
        "case": case.model_dump(mode="json"),
        "timeline": [e.model_dump(mode="json") for e in events],
    }
    return json.dumps(payload, ensure_ascii=False, indent=2)


def case_text(case: Case, events: Sequence[CaseEvent]) -> str:
    d = case.draft
    lines = [
        f"{case.id}  {d.title}",
        f"  status {case.status}, severity {case.severity}, priority {d.priority}, team {d.team} "
        f"(routing row {d.route})",
        f"  where: {d.site_name}; {d.building_name or d.building or '-'}; "
        f"{d.room_name or d.room or '-'}" + (f" (floor {d.floor})" if d.floor else ""),
        f"  address: {d.address or '-'}",
        f"  access: {d.access_notes or '-'}",
        f"  asset: {d.asset or '-'}; sensor {case.sensor}; last value {case.value:.1f} "
        f"(threshold {case.threshold:g}, rule {case.rule})",
        "  timeline:",
        *(f"    {e.at.isoformat()}  {e.kind:<15} {e.actor:<16} {e.text}" for e in events),
    ]
    return "\n".join(lines)


def user_line(user: User) -> str:
    return f"{user.id:<20} {user.role:<11} {user.name} <{user.email or '-'}>"


def rules_text(
    site: str,
    sensor_id: str,
    sensor: SensorConfig | None,
    parts: Iterable[ConditionExplanation],
    settings_of: Callable[[RuleBase], str],
) -> list[str]:
    where = ", ".join(
        f"{k} {v}"
        for k, v in (
            ("kind", sensor.kind if sensor else "temperature"),
            ("building", sensor.building if sensor else None),
            ("room", sensor.room if sensor else None),
            ("tags", ",".join(sensor.tags) if sensor and sensor.tags else None),
        )
        if v
    )
    lines = [f"{site}/{sensor_id} ({where}):"]
    for part in parts:
        chosen = part.chosen
        if chosen is None:
            lines.append(f"\n  {part.condition}: no row matches — not watched for this condition")
        elif not chosen.enabled:
            lines.append(f"\n  {part.condition}: off (row {chosen.id} disables it)")
        else:
            said = f"\n  {part.condition}: row {chosen.id} — {settings_of(chosen)}"
            lines.append(said + (f" ({part.note})" if part.note else ""))
        lines.extend(f"    {row.id:<20} {why}" for row, why in part.rows)
    return lines


def routing_text(
    *,
    condition: str,
    severity: str,
    site: str,
    sensor: str,
    known: bool,
    at: datetime,
    tz: str,
    why: Explanation,
    on_call: str | None,
) -> list[str]:
    lines = [
        f"{condition} ({severity}) at {site}/{sensor}, "
        f"{at.astimezone(ZoneInfo(tz)).isoformat(timespec='minutes')} {tz}:",
        f"  → team {why.chosen.team}, priority {why.chosen.priority}, by row {why.chosen.id}"
        + (f"; on call: {on_call}" if on_call else ""),
    ]
    if not known:
        lines.append(f"  (sensor {sensor} is not in the config: building and room unknown)")
    lines.extend(f"  {row.id:<20} {note}" for row, note in why.rows)
    return lines


def quarantine_entry(entry: QuarantineEntry) -> str:
    return (
        f"#{entry.id} {entry.reason} from {entry.source or '-'}\n"
        f"  {entry.count} time(s), first {entry.first_at:%Y-%m-%d %H:%M:%S}, "
        f"latest {entry.last_at:%Y-%m-%d %H:%M:%S} UTC\n"
        f"  why: {entry.detail}\n"
        f"  first bytes: {entry.sample!r}"
    )


def quarantine_table(path: Path, entries: Sequence[QuarantineEntry]) -> list[str]:
    lines = [
        f"{path}:",
        f"{'id':>5}  {'count':>7}  {'latest (UTC)':<19}  {'reason':<28}  source",
    ]
    lines.extend(
        f"{e.id:>5}  {e.count:>7}  {e.last_at:%Y-%m-%d %H:%M:%S}  {e.reason:<28}  {e.source[:80]}"
        for e in entries
    )
    return lines


def quarantine_json(path: Path, entries: Sequence[QuarantineEntry]) -> str:
    return json.dumps(
        [
            {
                "file": str(path),
                "id": e.id,
                "source": e.source,
                "reason": e.reason,
                "count": e.count,
                "first_at": e.first_at.isoformat(),
                "last_at": e.last_at.isoformat(),
                "detail": e.detail,
                "sample": e.sample.decode("utf-8", "backslashreplace"),
            }
            for e in entries
        ],
        indent=2,
    )
