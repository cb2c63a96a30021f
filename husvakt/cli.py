"""The `husvakt` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from casebridge.enrich import CONDITION_TITLES
from casebridge.errors import CaseStoreError
from casebridge.models import OPEN_STATUSES, CaseStatus, User
from casebridge.store import CaseFilter
from gateway.clock import SystemClock
from gateway.config import parse_duration
from gateway.configfile import ConfigError
from gateway.outbox import SqliteOutbox
from husvakt import __version__
from husvakt.allinone import WebhookSecretError
from husvakt.config import HusvaktConfig, load_config
from husvakt.output import cases_json, cases_table, for_terminal

if TYPE_CHECKING:
    from casebridge.store.sql import SqlCaseStore

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def _duration(text: str) -> float:
    """`90d`, `12h`, `1h30m`, `600` → seconds."""
    try:
        if text.endswith("d") and text[:-1].isascii() and text[:-1].isdigit():
            seconds = int(text[:-1]) * 86400.0
        else:
            seconds = float(parse_duration(text))  # type: ignore[arg-type]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < seconds <= 10 * 365 * 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: between a second and ten years")
    return seconds


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _store_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", type=Path, help="SQLite case store file")
    where.add_argument("--config", type=Path, help="site config YAML (uses its case store)")


def _add_people_commands(sub: Any) -> None:
    """`users` and `routing`."""
    users = sub.add_parser(
        "users",
        help="manage users and their API tokens",
        description="People who use the case API and receive notifications.",
    )
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser(
        "add", help="add or update a user", description="Add or update a user."
    )
    add.add_argument("user_id", help="a lowercase id, as used in the config's teams")
    add.add_argument("--name", required=True, help="full name")
    add.add_argument("--email", help="where notifications go")
    add.add_argument(
        "--role",
        choices=["technician", "dispatcher", "admin", "integrator"],
        default="technician",
        help="what they may do (default %(default)s)",
    )
    add.add_argument(
        "--language", choices=["en", "sv"], default="en", help="of the web pages (default en)"
    )
    password = users_sub.add_parser(
        "password",
        help="set a user's password for the web pages",
        description="Set the password a user signs in to the web pages with. Read from "
        "--password-file, else from the first line of standard input (never an argument, so "
        "it stays out of the shell history). Only a scrypt hash is stored.",
    )
    password.add_argument("user_id")
    password.add_argument("--password-file", type=Path, help="a file holding the password")
    token = users_sub.add_parser(
        "token",
        help="create an API token for a user (printed once)",
        description="Create a bearer token for a user. Only its hash is stored: keep the "
        "printed token; a lost token is replaced by creating a new one.",
    )
    token.add_argument("user_id")
    token.add_argument("--label", default="cli", help="what the token is for (e.g. 'phone')")
    token.add_argument(
        "--expires", type=_duration, default=None, metavar="DURATION", help="e.g. 90d, 12h"
    )
    revoke = users_sub.add_parser(
        "revoke",
        help="sign a user out everywhere and/or delete their API tokens",
        description="End every web session of the user and delete their API tokens (both "
        "unless one is chosen). Open pages and live streams end at their next request.",
    )
    revoke.add_argument("user_id")
    what = revoke.add_mutually_exclusive_group()
    what.add_argument("--token", action="store_true", help="only the API tokens")
    what.add_argument("--sessions", action="store_true", help="only the web sessions")
    ulist = users_sub.add_parser("list", help="list users", description="List users.")
    for p in (add, password, token, revoke, ulist):
        _store_options(p)

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
        choices=list(CONDITION_TITLES),
    )
    explain.add_argument("--severity", choices=["warning", "critical"], default="warning")
    explain.add_argument(
        "--at",
        type=_when,
        default=None,
        help="when (ISO 8601, e.g. 2026-01-17T03:00+01:00; default now)",
    )


def _add_rule_commands(sub: Any) -> None:
    """`husvakt rules explain` and `husvakt stream`."""
    rules = sub.add_parser("rules", help="inspect the rule table", description="Rule table tools.")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    rexplain = rules_sub.add_parser(
        "explain",
        help="which rule row applies to a sensor for each condition, and why",
        description="For each condition (freezing, fire, heat_rise, sensor_offline, "
        "sensor_fault), list every row of the rule table and say whether it matches the sensor, "
        "which one wins (the most specific) and what it decides.",
    )
    rexplain.add_argument("sensor", help="sensor id")
    rexplain.add_argument("--config", type=Path, required=True, help="site config YAML")
    rexplain.add_argument("--site", help="the sensor's site, when its id is used at several")

    stream = sub.add_parser(
        "stream",
        help="run the rules and the case bridge on the gateways' uplink (the server side)",
        description="Subscribe to every gateway's uplink topics on the configured broker "
        "(stream.broker), apply the rules and record cases in the configured store, with "
        "notifications and escalations, until Ctrl-C. With --engine faust, run a Faust worker on "
        "Kafka (stream.kafka) instead, with the MQTT → Kafka ingest and the case bridge "
        "consuming the alarms topic; more workers: `faust -A husvakt.faust_app worker`.",
    )
    stream.add_argument("--config", type=Path, required=True, help="site config YAML")
    stream.add_argument(
        "--engine",
        choices=["embedded", "faust"],
        default=None,
        help="default: stream.engine from the config (embedded)",
    )


def _add_safety_commands(sub: Any) -> None:
    hostile = sub.add_parser(
        "hostile",
        help="send every class of hostile input to a live `husvakt stream` and tally it",
        description="Start the embedded stream server of a config (default: the demo's) on a "
        "broker (an embedded one unless --broker), send it the hostile-input corpus over MQTT "
        "and, after each input, a genuine freezing reading on a fresh sensor; print per class "
        "the inputs tried, handled (process alive, input quarantined, the alarm's case opened) "
        "and failed. Exit status 1 if any failed.",
    )
    hostile.add_argument("--config", type=Path, default=None, help="site config YAML")
    hostile.add_argument("--broker", type=_address, metavar="HOST:PORT", default=None)
    hostile.add_argument("--json", action="store_true", help="print the tally as JSON")

    broker = sub.add_parser(
        "broker",
        help="lock down the MQTT broker: who may publish as which gateway",
        description="Broker tools.",
    )
    bsub = broker.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    acl = bsub.add_parser(
        "acl",
        help="write a mosquitto ACL and password file from the site configs",
        description="From the site configs, write to --out: husvakt.acl (each gateway may "
        "publish only under husvakt/v1/SITE/GATEWAY/# and read its own sensors' topics; the "
        "stream may read every gateway's topics; nothing else is allowed), husvakt.passwd with "
        "a password per broker user (kept in secrets/USER, 0600, reused when run again), and "
        "mosquitto-husvakt.conf to include from mosquitto.conf (no anonymous clients). With "
        "--tls, gateways are identified by their TLS client certificate instead (CN = gateway "
        "id) and no passwords are written.",
    )
    acl.add_argument(
        "--config", type=Path, action="append", required=True, help="site config (repeatable)"
    )
    acl.add_argument("--out", type=Path, required=True, help="directory to write to")
    acl.add_argument(
        "--tls",
        type=int,
        metavar="PORT",
        default=None,
        help="identify clients by TLS certificate (CN = gateway id) on a listener on PORT",
    )
    acl.add_argument("--bind", default=None, help="the TLS listener's address")
    for name in ("cafile", "certfile", "keyfile"):
        acl.add_argument(f"--{name}", type=Path, help=f"the TLS listener's {name} (with --tls)")

    quarantine = sub.add_parser(
        "quarantine",
        help="what the gateway or the stream refused, and why",
        description="Input that could not be used (malformed, out of bounds, from sensors or "
        "gateways the config does not know, dated in the future, …) is kept per source and "
        "reason with its first bytes and a count. Read it from the files a config names "
        "(gateway.quarantine, stream.quarantine) or from --db.",
    )
    qsub = quarantine.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")
    for action, text in (
        ("list", "one line per source and reason"),
        ("show", "one entry with its bytes"),
        ("purge", "delete entries (all, or of one --reason)"),
    ):
        q = qsub.add_parser(action, help=text)
        if action == "show":
            q.add_argument("id", type=int)
        where = q.add_mutually_exclusive_group(required=True)
        where.add_argument("--config", type=Path, help="site config YAML")
        where.add_argument("--db", type=Path, help="a quarantine SQLite file")
        if action != "show":
            q.add_argument("--reason", default=None, help="only this reason")
        if action == "list":
            q.add_argument("--json", action="store_true")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="husvakt",
        description="Watch buildings through their sensors and turn trouble into cases.",
    )
    parser.add_argument("--version", action="version", version=f"husvakt {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="replay a night at a school through simulated devices and show the cases it opens",
        description="Start an embedded MQTT broker, three simulated thermometers (MQTT JSON, "
        "Modbus TCP, serial line) and the all-in-one runtime; replay a night in about 20 s "
        "(a basement cooling to 3 °C, a boiler room overheating) and print the cases opened.",
    )
    demo.add_argument(
        "--db",
        type=Path,
        default=Path("husvakt-demo.db"),
        help="SQLite case store to create (replaced if it exists; default %(default)s)",
    )
    demo.add_argument(
        "--broker",
        type=_address,
        metavar="HOST:PORT",
        help="use this MQTT broker instead of starting an embedded one",
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=1440.0,
        help="simulated seconds per real second (default %(default)s: 8 h in 20 s)",
    )
    demo.add_argument(
        "--config", type=Path, default=None, help="demo site config (default config/demo.yaml)"
    )
    demo.add_argument("--json", action="store_true", help="print the cases as JSON")

    _add_safety_commands(sub)
    _add_rule_commands(sub)

    run = sub.add_parser(
        "run",
        help="run gateway, rules and case bridge in one process (until Ctrl-C)",
        description="The all-in-one runtime on the real clock: read the configured sensors, "
        "apply the rules and open cases in the configured SQLite store.",
    )
    run.add_argument("--config", type=Path, required=True, help="site config YAML")

    gw = sub.add_parser(
        "gateway",
        help="read the sensors and uplink their readings (what runs on the Raspberry Pi)",
        description="Read every configured sensor (MQTT, Modbus, serial), keep each reading in "
        "the durable outbox and uplink it over MQTT (gateway.uplink) until confirmed. Stops "
        "cleanly on Ctrl-C or SIGTERM; what was not sent yet is kept for the next start.",
    )
    gw.add_argument("--config", type=Path, required=True, help="site config YAML")

    rp = sub.add_parser(
        "replay",
        help="replay a scenario or a recorded trace through the rules and cases (virtual clock)",
        description="Run a scenario (YAML) or a trace recorded by `husvakt record` (JSON Lines) "
        "through the real rules and case bridge on a virtual clock, as fast as the machine "
        "allows, and print the cases, escalations and notifications. With --expect, compare "
        "against an expectations file and exit 1 with a readable diff on mismatch.",
    )
    rp.add_argument("source", type=Path, help="SCENARIO.yaml or TRACE.jsonl")
    rp.add_argument("--config", type=Path, required=True, help="site config YAML")
    rp.add_argument("--expect", type=Path, help="expectations YAML")
    rp.add_argument("--json", action="store_true", help="the whole result as JSON")
    rp.add_argument(
        "--db",
        type=Path,
        help="keep the cases in this SQLite file (to look at them, e.g. with `cases serve`)",
    )

    sim = sub.add_parser(
        "sim",
        help="play a scenario's devices live on their real protocols",
        description="Start a scenario's simulated devices — MQTT publishers, Modbus TCP servers, "
        "serial lines on pseudo-terminals, 1-Wire files — following its signals and faults on "
        "an accelerated clock, and print where each one is. Runs until the scenario ends.",
    )
    sim.add_argument("--scenario", type=Path, required=True, help="scenario YAML")
    sim.add_argument(
        "--broker",
        type=_address,
        metavar="HOST:PORT",
        help="MQTT broker for MQTT devices (default: start an embedded one)",
    )
    sim.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulated seconds per real second (default %(default)s)",
    )

    rec = sub.add_parser(
        "record",
        help="record uplinked readings from a broker to a trace file that replay accepts",
        description="Subscribe to husvakt/v1/+/+/readings on a broker and append every reading, "
        "with when it was received, to a JSON Lines trace, until Ctrl-C (or --count).",
    )
    rec.add_argument("--broker", type=_address, required=True, metavar="HOST:PORT")
    rec.add_argument("--out", type=Path, required=True, help="trace file (appended to)")
    rec.add_argument("--topic", default="husvakt/v1/+/+/readings")
    rec.add_argument("--count", type=int, default=None, help="stop after this many readings")

    cases = sub.add_parser(
        "cases", help="list and inspect cases", description="Work with the case store."
    )
    cases_sub = cases.add_subparsers(dest="cases_command", required=True, metavar="ACTION")
    listing = cases_sub.add_parser(
        "list", help="list cases", description="List cases, oldest first."
    )
    show = cases_sub.add_parser(
        "show", help="show one case with its timeline", description="Show a case and its timeline."
    )
    show.add_argument("case_id", help="e.g. HV-2026-000001")
    for p in (listing, show):
        _store_options(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument("--open", action="store_true", help="only open cases")
    serve = cases_sub.add_parser(
        "serve",
        help="serve the case API over HTTP (OpenAPI at /docs)",
        description="Serve the HTTP API for work lists, cases and actions, authenticated with "
        "bearer tokens (husvakt users token). Binds to 127.0.0.1 unless told otherwise.",
    )
    serve.add_argument("--config", type=Path, required=True, help="site config YAML")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port (default %(default)s)")

    _add_people_commands(sub)

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
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL if verbosity < 2 else logging.DEBUG)


def _print(text: str) -> None:
    """Every line the CLI prints: stored text may carry terminal control sequences."""
    sys.stdout.write(for_terminal(text) + "\n")


def _config_summary(path: Path, config: HusvaktConfig) -> str:
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
        f"  case store: {config.cases.sqlite}"
    )


def _cmd_config_check(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    _print(_config_summary(args.file, config))
    return EXIT_OK


def _store(args: argparse.Namespace, *, create: bool = False) -> SqlCaseStore:
    # SQLAlchemy loads here, not at import: `husvakt gateway` on a small Pi never needs it.
    from casebridge.store.sql import SqliteCaseStore, open_store  # noqa: PLC0415

    if args.db is not None:
        if not create and not args.db.exists():
            raise CaseStoreError(f"{args.db}: no such case store")
        return SqliteCaseStore(Path(args.db))
    return open_store(load_config(args.config).cases)


async def _cases_list(args: argparse.Namespace) -> int:
    store = _store(args)
    await store.start()
    try:
        statuses: Sequence[CaseStatus] | None = OPEN_STATUSES if args.open else None
        cases = await store.list_cases(CaseFilter(statuses=statuses))
    finally:
        await store.aclose()
    _print(cases_json(cases) if args.json else cases_table(cases))
    return EXIT_OK


async def _cases_show(args: argparse.Namespace) -> int:
    store = _store(args)
    await store.start()
    try:
        case = await store.get_case(args.case_id)
        events = await store.timeline(args.case_id) if case else []
    finally:
        await store.aclose()
    if case is None:
        sys.stderr.write(f"husvakt: no case {args.case_id}\n")
        return EXIT_FAILED
    if args.json:
        import json  # noqa: PLC0415 - only this branch needs it

        payload = {
            "case": case.model_dump(mode="json"),
            "timeline": [e.model_dump(mode="json") for e in events],
        }
        _print(json.dumps(payload, ensure_ascii=False, indent=2))
        return EXIT_OK
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
    _print("\n".join(lines))
    return EXIT_OK


async def _cases_serve(args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - keep `husvakt --help` fast

    from casebridge.api import create_app  # noqa: PLC0415

    config = load_config(args.config)
    from casebridge.store.sql import open_store  # noqa: PLC0415

    store = open_store(config.cases)
    await store.start()
    app = create_app(
        store=store,
        teams=config.teams,
        clock=SystemClock(),
        sites=config.sites,
        rule_state=config.stream.state,
        web=config.web,
    )
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info"))
    try:
        await server.serve()
    finally:
        await store.aclose()
    return EXIT_OK


async def _users(args: argparse.Namespace) -> int:
    from casebridge.auth import hash_password, hash_token, new_token  # noqa: PLC0415

    store = _store(args, create=args.users_command == "add")
    await store.start()
    now = datetime.now(UTC)
    try:
        if args.users_command == "add":
            user = User(
                id=args.user_id,
                name=args.name,
                email=args.email,
                role=args.role,
                language=args.language,
            )
            await store.add_user(user, now=now)
            _print(f"user {user.id} ({user.role}) saved in {store.description}")
        elif args.users_command == "password":
            source = args.password_file.open(encoding="utf-8") if args.password_file else sys.stdin
            with source:
                secret = source.readline().rstrip("\n")
            if len(secret) < 8:
                sys.stderr.write("husvakt: a password needs at least 8 characters\n")
                return EXIT_FAILED
            await store.set_password(args.user_id, hash_password(secret))
            _print(f"password set for {args.user_id}")
        elif args.users_command == "token":
            token = new_token()
            until = now + timedelta(seconds=args.expires) if args.expires else None
            await store.add_token(
                args.user_id, hash_token(token), label=args.label, now=now, expires_at=until
            )
            expiry = f", expires {until:%Y-%m-%d %H:%M} UTC" if until else ""
            sys.stderr.write(f"token for {args.user_id} (shown once; keep it secret{expiry}):\n")
            _print(token)
        elif args.users_command == "revoke":
            ended, deleted = await store.revoke(
                args.user_id, sessions_too=not args.token, tokens_too=not args.sessions
            )
            _print(f"{args.user_id}: {ended} web session(s) ended, {deleted} API token(s) deleted")
        else:
            for u in await store.list_users():
                _print(f"{u.id:<20} {u.role:<11} {u.name} <{u.email or '-'}>")
    finally:
        await store.aclose()
    return EXIT_OK


def _rules_explain(args: argparse.Namespace) -> int:
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
        _print(f"{args.sensor} is not in the config; as an unknown sensor at site {site}:")
    sensor = index.get((site, args.sensor))
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
    _print(f"{site}/{args.sensor} ({where}):")
    for part in explain_sensor(config.rules, site, args.sensor, sensor):
        chosen = part.chosen
        if chosen is None:
            _print(f"\n  {part.condition}: no row matches — not watched for this condition")
        elif not chosen.enabled:
            _print(f"\n  {part.condition}: off (row {chosen.id} disables it)")
        else:
            _print(f"\n  {part.condition}: row {chosen.id} — {settings_of(chosen)}")
        for row, why in part.rows:
            _print(f"    {row.id:<20} {why}")
    return EXIT_OK


def _cmd_stream(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    engine = args.engine or config.stream.engine
    from casebridge.store.sql import open_store  # noqa: PLC0415

    if engine == "faust":
        return _run_faust_worker(config)
    from husvakt.server import EmbeddedServer  # noqa: PLC0415

    async def serve() -> None:
        store = open_store(config.cases)
        await store.start()
        stop = _stop_on_signals()
        try:
            await EmbeddedServer(config=config, clock=SystemClock(), store=store).run(stop)
        finally:
            await store.aclose()

    asyncio.run(serve())
    return EXIT_OK


def _run_faust_worker(config: HusvaktConfig) -> int:
    """A Faust worker with the MQTT ingest and the case bridge, until SIGINT/SIGTERM. Faust
    owns its event loop and its signal handling."""
    import faust  # noqa: PLC0415 - an optional extra

    from casebridge.store.sql import open_store  # noqa: PLC0415
    from husvakt.server import FaustServer  # noqa: PLC0415
    from stream.kafka_admin import ensure_topics  # noqa: PLC0415

    asyncio.run(ensure_topics(config.stream.kafka))
    asyncio.set_event_loop(asyncio.new_event_loop())
    server = FaustServer(config=config, clock=SystemClock(), store=open_store(config.cases))
    worker = faust.Worker(server.engine.app, loglevel="INFO", quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED
    return EXIT_OK


def _routing_explain(args: argparse.Namespace) -> int:
    from casebridge.routing import explain, route_facts  # noqa: PLC0415

    config = load_config(args.config)
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
    from casebridge.people import on_call  # noqa: PLC0415

    person = on_call(team, at) if team else None
    _print(
        f"{args.condition} ({args.severity}) at {args.site}/{args.sensor}, "
        f"{at.astimezone(ZoneInfo(tz)).isoformat(timespec='minutes')} {tz}:"
    )
    _print(
        f"  → team {why.chosen.team}, priority {why.chosen.priority}, by row {why.chosen.id}"
        + (f"; on call: {person}" if person else "")
    )
    if sensor is None:
        _print(f"  (sensor {args.sensor} is not in the config: building and room unknown)")
    for row, note in why.rows:
        _print(f"  {row.id:<20} {note}")
    return EXIT_OK


async def _cmd_replay(args: argparse.Namespace) -> int:
    from husvakt import replay as rp  # noqa: PLC0415 - keep `husvakt --help` fast

    store = None
    if args.db is not None:
        from casebridge.store.sql import SqliteCaseStore  # noqa: PLC0415

        store = SqliteCaseStore(args.db)
    try:
        result = await rp.replay_path(args.source, load_config(args.config), store=store)
    except ValueError as exc:
        sys.stderr.write(f"husvakt: {exc}\n")
        return EXIT_FAILED
    finally:
        if store is not None:
            await store.aclose()
    sys.stdout.write(result.model_dump_json(indent=2) + "\n" if args.json else result.render())
    if args.expect is None:
        return EXIT_OK
    problems = rp.compare(result, rp.load_expectations(args.expect))
    if problems:
        sys.stderr.write(f"replay does not match {args.expect}:\n" + "\n".join(problems) + "\n")
        return EXIT_FAILED
    sys.stderr.write(f"replay matches {args.expect}\n")
    return EXIT_OK


async def _cmd_sim(args: argparse.Namespace) -> int:
    from husvakt.broker import EmbeddedBroker  # noqa: PLC0415
    from husvakt.replay import load_scenario_file  # noqa: PLC0415
    from husvakt.sim import Endpoint, run_sim  # noqa: PLC0415

    scenario = load_scenario_file(args.scenario)
    endpoints: list[Endpoint] = []
    ready = asyncio.Event()

    async def announce() -> None:
        await ready.wait()
        _print(f"husvakt sim: {scenario.name}, {len(endpoints)} devices at {args.speed:g}× speed")
        for e in endpoints:
            _print(f"  {e.sensor:<20} {e.protocol:<8} {e.where}")
        sys.stdout.flush()

    async with contextlib.AsyncExitStack() as stack:
        broker = args.broker
        if broker is None and any(d.protocol == "mqtt" for d in scenario.devices):
            embedded = await stack.enter_async_context(EmbeddedBroker())
            broker = (embedded.host, embedded.port)
            _print(f"embedded MQTT broker on {embedded.host}:{embedded.port}")
        teller = asyncio.create_task(announce())
        await run_sim(scenario, speed=args.speed, broker=broker, ready=ready, endpoints=endpoints)
        await teller
    _print("husvakt sim: scenario finished")
    return EXIT_OK


async def _cmd_record(args: argparse.Namespace) -> int:
    from husvakt.record import record  # noqa: PLC0415

    n = await record(
        host=args.broker[0],
        port=args.broker[1],
        topic=args.topic,
        out=args.out,
        count=args.count,
        stop=_stop_on_signals(),
    )
    sys.stderr.write(f"recorded {n} readings to {args.out}\n")
    return EXIT_OK


def _program() -> str:
    """How the user can run this command again: `husvakt` when that is on PATH, else the path
    they ran (e.g. `.venv/bin/husvakt` after `scripts/demo`)."""
    import os  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    invoked = Path(sys.argv[0]).resolve()
    on_path = shutil.which("husvakt")
    if on_path is not None and Path(on_path).resolve() == invoked:
        return "husvakt"
    if invoked.name != "husvakt":
        return "husvakt"  # run as `python -m husvakt.cli`
    return os.path.relpath(invoked)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _no_gateway(path: Path, command: str) -> int:
    sys.stderr.write(
        f"husvakt: {path} has no 'gateway' section; `husvakt {command}` reads sensors through "
        "one (a config without it is for `husvakt stream` or `husvakt cases serve`)\n"
    )
    return EXIT_FAILED


async def _cmd_gateway(args: argparse.Namespace) -> int:
    from gateway.service import run_gateway  # noqa: PLC0415 - keep `husvakt --help` fast

    config = load_config(args.config)
    if config.gateway is None:
        return _no_gateway(args.config, "gateway")
    sensors = list(config.sensor_index().values())
    await run_gateway(
        config=config.gateway, sensors=sensors, clock=SystemClock(), stop=_stop_on_signals()
    )
    return EXIT_OK


async def _cmd_run(args: argparse.Namespace) -> int:
    from husvakt.allinone import AllInOne  # noqa: PLC0415 - keep `husvakt --help` fast

    config = load_config(args.config)
    if config.gateway is None:
        return _no_gateway(args.config, "run")
    from casebridge.store.sql import open_store  # noqa: PLC0415

    store = open_store(config.cases)
    await store.start()
    stop = _stop_on_signals()
    outbox = SqliteOutbox(
        config.gateway.outbox.path,
        max_bytes=int(config.gateway.outbox.max_mb * 1e6),
        thin_window=config.gateway.outbox.thin_window,
    )
    await outbox.open()
    try:
        await AllInOne(config=config, clock=SystemClock(), store=store, outbox=outbox).run(stop)
    finally:
        await store.aclose()
        await outbox.close()
    return EXIT_OK


async def _cmd_demo(args: argparse.Namespace) -> int:
    from husvakt.demo import DEFAULT_CONFIG, run_demo  # noqa: PLC0415 - keep `husvakt --help` fast

    if not args.json:
        _print(
            "husvakt demo: replaying the night of 14 January 2026 at Nordskolan "
            f"(8 h at {args.speed:g}× speed)…"
        )
    result = await run_demo(
        db=args.db, config_path=args.config or DEFAULT_CONFIG, speed=args.speed, broker=args.broker
    )
    if args.json:
        _print(cases_json(result.cases))
        return EXIT_OK
    _print(
        f"readings: {result.readings} good, {result.faults} faults; "
        f"{result.quarantined} unusable inputs quarantined\n"
    )
    _print(cases_table(result.cases))
    _print(f"\n{len(result.cases)} case(s) in {result.db.resolve()}")
    _print(f"list them again: {_program()} cases list --db {result.db}")
    return EXIT_OK


async def _cmd_hostile(args: argparse.Namespace) -> int:
    import tempfile  # noqa: PLC0415

    from husvakt.demo import DEFAULT_CONFIG  # noqa: PLC0415 - keep `husvakt --help` fast
    from husvakt.hostile import check  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="husvakt-hostile-") as directory:
        tally = await check(
            config_path=args.config or DEFAULT_CONFIG, broker=args.broker, directory=Path(directory)
        )
    if args.json:
        _print(json.dumps(tally.as_json(), indent=2))
    else:
        _print(tally.table())
    return EXIT_FAILED if tally.failures or not tally.tried else EXIT_OK


def _quarantine_files(args: argparse.Namespace) -> list[Path]:
    if args.db is not None:
        return [args.db]
    config = load_config(args.config)
    paths = [config.stream.quarantine]
    if config.gateway is not None:
        paths.append(config.gateway.quarantine)
    return [p for p in dict.fromkeys(paths) if p is not None and p.exists()]


def _cmd_broker(args: argparse.Namespace) -> int:
    from husvakt.broker_acl import TlsListener, broker_users, write_broker_files  # noqa: PLC0415

    configs = [load_config(path) for path in args.config]
    tls = None
    if args.tls is not None:
        missing = [n for n in ("cafile", "certfile", "keyfile") if getattr(args, n) is None]
        if missing:
            sys.stderr.write(f"husvakt: --tls needs --{', --'.join(missing)}\n")
            return EXIT_USAGE
        tls = TlsListener(args.tls, args.cafile, args.certfile, args.keyfile, args.bind)
    try:
        users = broker_users(configs, tls=tls is not None)
    except ValueError as exc:
        sys.stderr.write(f"husvakt: {exc}\n")
        return EXIT_FAILED
    source = ", ".join(str(p) for p in args.config)
    for path in write_broker_files(users, args.out, source=source, tls=tls):
        _print(f"wrote {path}")
    for user in users:
        _print(f"  {user.name}: {user.what}")
    how = "its certificate (CN)" if args.tls else "its password in secrets/USER"
    _print(f"each client connects as its user, with {how}; include mosquitto-husvakt.conf")
    return EXIT_OK


def _cmd_quarantine(args: argparse.Namespace) -> int:
    from gateway.quarantine import SqliteQuarantine  # noqa: PLC0415

    files = _quarantine_files(args)
    if not files:
        _print("nothing quarantined (no quarantine file yet)")
        return EXIT_OK
    action = args.quarantine_command
    for path in files:
        store = SqliteQuarantine(path)
        try:
            if action == "purge":
                _print(f"{path}: {store.purge(reason=args.reason)} entr(ies) deleted")
            elif action == "show":
                entry = store.get(args.id)
                if entry is None:
                    continue
                _print(
                    f"#{entry.id} {entry.reason} from {entry.source or '-'}\n"
                    f"  {entry.count} time(s), first {entry.first_at:%Y-%m-%d %H:%M:%S}, "
                    f"latest {entry.last_at:%Y-%m-%d %H:%M:%S} UTC\n"
                    f"  why: {entry.detail}\n"
                    f"  first bytes: {entry.sample!r}"
                )
                return EXIT_OK
            else:
                entries = store.entries(reason=args.reason)
                if args.json:
                    _print(json.dumps([_entry_json(e, path) for e in entries], indent=2))
                    continue
                _print(f"{path}:")
                _print(f"{'id':>5}  {'count':>7}  {'latest (UTC)':<19}  {'reason':<28}  source")
                for e in entries:
                    _print(
                        f"{e.id:>5}  {e.count:>7}  {e.last_at:%Y-%m-%d %H:%M:%S}  "
                        f"{e.reason:<28}  {e.source[:80]}"
                    )
        finally:
            store.close()
    if action == "show":
        sys.stderr.write(f"husvakt: no quarantine entry {args.id}\n")
        return EXIT_FAILED
    return EXIT_OK


def _entry_json(entry: Any, path: Path) -> dict[str, object]:
    return {
        "file": str(path),
        "id": entry.id,
        "source": entry.source,
        "reason": entry.reason,
        "count": entry.count,
        "first_at": entry.first_at.isoformat(),
        "last_at": entry.last_at.isoformat(),
        "detail": entry.detail,
        "sample": entry.sample.decode("utf-8", "backslashreplace"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    synchronous = {
        "config": _cmd_config_check,
        "routing": _routing_explain,
        "rules": _rules_explain,
        "stream": _cmd_stream,
        "quarantine": _cmd_quarantine,
        "broker": _cmd_broker,
    }
    commands = {
        "users": _users,
        "replay": _cmd_replay,
        "record": _cmd_record,
        "sim": _cmd_sim,
        "gateway": _cmd_gateway,
        "run": _cmd_run,
        "demo": _cmd_demo,
        "hostile": _cmd_hostile,
        "cases": {"list": _cases_list, "show": _cases_show, "serve": _cases_serve}.get(
            getattr(args, "cases_command", ""), _cases_list
        ),
    }
    try:
        if args.command in synchronous:
            return synchronous[args.command](args)
        return asyncio.run(commands[args.command](args))
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
        sys.stderr.write(f"husvakt: {len(exc.problems)} problem(s) in the configuration\n")
        return EXIT_FAILED
    except (CaseStoreError, WebhookSecretError) as exc:
        sys.stderr.write(f"husvakt: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()


if __name__ == "__main__":
    sys.exit(main())
