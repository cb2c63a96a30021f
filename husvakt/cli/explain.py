"""`husvakt config check`, `husvakt rules explain` and `husvakt routing explain`: what a
config means, without running anything."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from husvakt.cli.common import EXIT_FAILED, EXIT_OK, say, when
from husvakt.cli.render import config_summary, routing_text, rules_text
from husvakt.config import load_config
from stream.conditions import Vocabulary
from stream.models import Severity

__all__ = ["add"]


def add(sub: Any) -> None:
    config = sub.add_parser(
        "config", help="check configuration files", description="Configuration tools."
    )
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_sub.add_parser(
        "check",
        help="validate a site config and report every error with file, line and field",
        description="Validate a site config. Exits 0 and prints a summary when it is good; "
        "otherwise prints each problem as FILE:LINE:COLUMN: FIELD: MESSAGE and exits 1.",
    )
    check.add_argument("file", type=Path)
    check.set_defaults(run=config_check)

    rules = sub.add_parser("rules", help="inspect the rule table", description="Rule table tools.")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    rexplain = rules_sub.add_parser(
        "explain",
        help="which rule row applies to a sensor for each condition, and why",
        description="For each condition, list every row of the rule table and say whether it "
        "matches the sensor, which one wins (the most specific) and what it decides.",
    )
    rexplain.add_argument("sensor", help="sensor id")
    rexplain.add_argument("--config", type=Path, required=True, help="site config YAML")
    rexplain.add_argument("--site", help="the sensor's site, when its id is used at several")
    rexplain.set_defaults(run=rules_explain)

    routing = sub.add_parser(
        "routing", help="inspect the routing table", description="Routing table tools."
    )
    routing_sub = routing.add_subparsers(dest="routing_command", required=True, metavar="ACTION")
    explain = routing_sub.add_parser(
        "explain",
        help="who would get a case, and why (opens nothing)",
        description="Show which routing row would route a case for this site, sensor and "
        "condition, and why every other row did not.",
    )
    explain.add_argument("--config", type=Path, required=True, help="site config YAML")
    explain.add_argument("--site", required=True)
    explain.add_argument("--sensor", required=True)
    explain.add_argument(
        "--condition",
        required=True,
        help="a built-in condition or one the config's rules name (e.g. freezing, damp)",
    )
    explain.add_argument("--severity", choices=get_args(Severity), default="warning")
    explain.add_argument(
        "--at",
        type=when,
        default=None,
        help="when (ISO 8601, e.g. 2026-01-17T03:00+01:00; default now)",
    )
    explain.set_defaults(run=routing_explain)


def config_check(args: argparse.Namespace) -> int:
    say(config_summary(args.file, load_config(args.file, cases=False)))
    return EXIT_OK


def rules_explain(args: argparse.Namespace) -> int:
    from stream.explain import explain_sensor, settings_of  # noqa: PLC0415

    config = load_config(args.config)
    index = config.sensor_index()
    sites = [site for (site, sensor) in index if sensor == args.sensor]
    if args.site:
        site = args.site
    elif len(sites) == 1:
        site = sites[0]
    elif sites:
        sys.stderr.write(f"husvakt: {args.sensor} is at sites {', '.join(sites)}; pass --site\n")
        return EXIT_FAILED
    else:
        site = config.sites[0].id
        say(f"{args.sensor} is not in the config; as an unknown sensor at site {site}:")
    sensor = index.get((site, args.sensor))
    parts = explain_sensor(
        config.rules, site, args.sensor, sensor, timezone=config.timezones().get(site, "UTC")
    )
    for line in rules_text(site, args.sensor, sensor, parts, settings_of):
        say(line)
    return EXIT_OK


def routing_explain(args: argparse.Namespace) -> int:
    from casebridge.people import on_call  # noqa: PLC0415
    from casebridge.routing import explain, route_facts  # noqa: PLC0415

    config = load_config(args.config)
    conditions = Vocabulary(config.rules)
    if args.condition not in conditions:
        sys.stderr.write(
            f"husvakt: no condition {args.condition!r} in {args.config}; "
            f"choose one of: {', '.join(conditions.names())}\n"
        )
        return EXIT_FAILED
    sensor = config.sensor_index().get((args.site, args.sensor))
    site = next((s for s in config.sites if s.id == args.site), None)
    facts = route_facts(
        site=args.site,
        sensor=args.sensor,
        condition=args.condition,
        severity=args.severity,
        config=sensor,
    )
    at = args.at or datetime.now(UTC)
    tz = site.timezone if site else "UTC"
    why = explain(config.routing, facts, at=at, tz=tz)
    team = next((t for t in config.teams if t.id == why.chosen.team), None)
    lines = routing_text(
        condition=args.condition,
        severity=args.severity,
        site=args.site,
        sensor=args.sensor,
        known=sensor is not None,
        at=at,
        tz=tz,
        why=why,
        on_call=on_call(team, at) if team else None,
    )
    for line in lines:
        say(line)
    return EXIT_OK
