"""`husvakt report`: what became of the cases of a period, per team, site and condition —
the same figures as the reports page (one computation, `casebridge.reports`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from casebridge.reports import (
    build_report,
    parse_period,
    report_csv,
    report_json,
    report_table,
    report_timezone,
)
from gateway.clock import SystemClock
from husvakt.cli.common import EXIT_FAILED, EXIT_OK
from husvakt.config import load_config

__all__ = ["add"]


def add(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="cases of a period: counts, times to acknowledge and resolve, SLA, false alarms",
        description="What became of the cases opened in a period, per team, site and "
        "condition, with a total: cases opened, time to acknowledge and to resolve (median "
        "and p90, in minutes), response SLA met or breached, escalations, failed "
        "notification attempts, reopened cases and false alarms (cleared before anyone "
        "acknowledged). Computed from the case timelines in the case store. Days and months "
        "are the sites' time zone (UTC when they differ; --tz to choose).",
    )
    report.add_argument("--config", type=Path, required=True, help="site config YAML")
    report.add_argument(
        "--from",
        dest="first",
        required=True,
        help="first day (YYYY-MM-DD) or month (YYYY-MM) of the period",
    )
    report.add_argument(
        "--to",
        dest="last",
        required=True,
        help="last day (YYYY-MM-DD) or month (YYYY-MM), included: --from 2026-01 --to 2026-03 "
        "is January to March",
    )
    report.add_argument("--site", action="append", help="only this site (repeatable)")
    report.add_argument("--team", action="append", help="only this team (repeatable)")
    report.add_argument("--tz", help="the time zone of the days and months (e.g. Europe/Stockholm)")
    report.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table for a terminal (default), csv for a spreadsheet (the same as the reports "
        "page's download; times in minutes), json (times in seconds, with the month trend)",
    )
    report.add_argument("--output", type=Path, help="file to write (default: standard output)")
    report.set_defaults(run=run_report)


async def run_report(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    known_sites = {s.id for s in config.sites}
    known_teams = {t.id for t in config.teams}
    for wanted, known, what in ((args.site, known_sites, "site"), (args.team, known_teams, "team")):
        unknown = sorted(set(wanted or ()) - known)
        if unknown:
            sys.stderr.write(
                f"husvakt: no {what} {unknown[0]!r} in {args.config} "
                f"(there: {', '.join(sorted(known)) or 'none'})\n"
            )
            return EXIT_FAILED
    zone = args.tz or report_timezone([s.timezone for s in config.sites])
    try:
        period = parse_period(args.first, args.last, zone)
    except ValueError as exc:
        sys.stderr.write(f"husvakt: {exc}\n")
        return EXIT_FAILED
    from husvakt.assemble import open_cases  # noqa: PLC0415 - SQLAlchemy only when used

    store = await open_cases(config)
    try:
        report = await build_report(
            store, period, now=SystemClock().now(), sites=args.site, teams=args.team
        )
    finally:
        await store.aclose()
    if args.format == "csv":
        text = report_csv(report)
    elif args.format == "json":
        text = json.dumps(report_json(report), indent=2) + "\n"
    else:
        text = report_table(report)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK
