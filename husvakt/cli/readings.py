"""`husvakt readings`: enter a meter reading by hand, and export kept readings as CSV."""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import sys
from datetime import UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from casebridge.readings import local_time, manual_reading
from casebridge.store.readings import DuplicateReadingError
from gateway.clock import SystemClock
from husvakt.cli.common import EXIT_FAILED, EXIT_OK, say
from husvakt.config import HusvaktConfig, load_config

__all__ = ["add"]

#: The most rows one export writes (a year of one sensor a minute is 525,600).
MAX_EXPORT = 5_000_000


def add(sub: Any) -> None:
    readings = sub.add_parser(
        "readings",
        help="enter readings by hand; export kept readings",
        description="Readings in the case store: a meter read by hand (it goes through the "
        "same rules as a device's readings), and CSV of what was kept.",
    )
    rsub = readings.add_subparsers(dest="readings_command", required=True, metavar="ACTION")
    enter = rsub.add_parser(
        "add",
        help="enter a reading of a sensor read by hand",
        description="Enter a reading of a sensor whose source is `manual` (a meter without a "
        "connected device). The rules evaluate it within seconds where husvakt runs.",
    )
    enter.add_argument("--config", type=Path, required=True, help="site config YAML")
    enter.add_argument("--site", required=True)
    enter.add_argument("--sensor", required=True)
    enter.add_argument("--value", type=float, required=True, help="the reading, in its unit")
    enter.add_argument(
        "--at", help="when it was read (ISO 8601; a time without zone is the site's; default now)"
    )
    enter.add_argument("--by", help="who read it (default: this login's name)")
    enter.set_defaults(run=readings_add)
    export = rsub.add_parser(
        "export",
        help="write kept readings as CSV",
        description="Write the readings kept for a site (a device's last per sensor and "
        "minute, and those entered by hand) as CSV: site, sensor, kind, unit, time (UTC and "
        "the site's), value, source, by.",
    )
    export.add_argument("--config", type=Path, required=True, help="site config YAML")
    export.add_argument("--site", required=True)
    export.add_argument("--from", dest="start", required=True, help="ISO date or time")
    export.add_argument("--to", dest="end", required=True, help="ISO date or time (excluded)")
    export.add_argument("--sensor", action="append", help="only this sensor (repeatable)")
    export.add_argument("--output", type=Path, help="file to write (default: standard output)")
    export.set_defaults(run=readings_export)


def _site_zone(config: HusvaktConfig, site: str) -> str:
    zone = config.timezones().get(site)
    if zone is None:
        raise ValueError(f"no site {site!r} in the config")
    return zone


async def readings_add(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now = SystemClock().now()
    try:
        zone = _site_zone(config, args.site)
        at = now if args.at is None else local_time(args.at, zone)
        reading = manual_reading(
            config.sensor_index(),
            site=args.site,
            sensor=args.sensor,
            value=args.value,
            at=at,
            actor=args.by or getpass.getuser(),
            now=now,
        )
    except ValueError as exc:
        sys.stderr.write(f"husvakt: {exc}\n")
        return EXIT_FAILED
    from husvakt.assemble import open_cases  # noqa: PLC0415 - SQLAlchemy only when used

    store = await open_cases(config)
    try:
        kept = await store.add_manual_reading(reading)
    except DuplicateReadingError as exc:
        sys.stderr.write(f"husvakt: {exc}\n")
        return EXIT_FAILED
    finally:
        await store.aclose()
    local = kept.ts.astimezone(ZoneInfo(zone)).isoformat(timespec="minutes")
    say(
        f"kept reading {kept.id}: {kept.site}/{kept.sensor} {kept.value:g} {kept.unit} at "
        f"{local} by {kept.actor}; the rules evaluate it where husvakt runs"
    )
    return EXIT_OK


async def readings_export(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        zone = _site_zone(config, args.site)
        start, end = local_time(args.start, zone), local_time(args.end, zone)
    except ValueError as exc:
        sys.stderr.write(f"husvakt: {exc}\n")
        return EXIT_FAILED
    if end <= start:
        sys.stderr.write("husvakt: --to must be after --from\n")
        return EXIT_FAILED
    from husvakt.assemble import open_cases  # noqa: PLC0415 - SQLAlchemy only when used

    store = await open_cases(config)
    try:
        rows = await store.readings_between(
            args.site, start, end, sensors=args.sensor, limit=MAX_EXPORT + 1
        )
    finally:
        await store.aclose()
    if len(rows) > MAX_EXPORT:
        sys.stderr.write(f"husvakt: more than {MAX_EXPORT:,} readings; export a shorter stretch\n")
        return EXIT_FAILED
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["site", "sensor", "kind", "unit", "utc", "local", "value", "source", "by"])
    for r in rows:
        writer.writerow(
            [
                r.site,
                r.sensor,
                r.kind,
                r.unit,
                r.ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                r.ts.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds"),
                repr(r.value) if r.value != int(r.value) else f"{r.value:.1f}",
                r.source,
                _cell(r.actor or ""),
            ]
        )
    text = out.getvalue()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        sys.stderr.write(f"husvakt: wrote {len(rows)} readings to {args.output}\n")
    return EXIT_OK


def _cell(text: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
