"""The commands that keep husvakt safe: `hostile` (prove hostile input cannot silence it),
`broker acl` (who may speak as which gateway) and `quarantine` (what was refused, and why)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from husvakt.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, address, say
from husvakt.cli.render import quarantine_entry, quarantine_json, quarantine_table
from husvakt.config import load_config

__all__ = ["add"]


def add(sub: Any) -> None:
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
    hostile.add_argument("--broker", type=address, metavar="HOST:PORT", default=None)
    hostile.add_argument("--json", action="store_true", help="print the tally as JSON")
    hostile.set_defaults(run=hostile_command)

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
    acl.set_defaults(run=broker_acl)

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
        q.set_defaults(run=quarantine_command)
        if action == "show":
            q.add_argument("id", type=int)
        where = q.add_mutually_exclusive_group(required=True)
        where.add_argument("--config", type=Path, help="site config YAML")
        where.add_argument("--db", type=Path, help="a quarantine SQLite file")
        if action != "show":
            q.add_argument("--reason", default=None, help="only this reason")
        if action == "list":
            q.add_argument("--json", action="store_true")


async def hostile_command(args: argparse.Namespace) -> int:
    import tempfile  # noqa: PLC0415

    from husvakt.demo import DEFAULT_CONFIG  # noqa: PLC0415 - keep `husvakt --help` fast
    from husvakt.hostile import check  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="husvakt-hostile-") as directory:
        tally = await check(
            config_path=args.config or DEFAULT_CONFIG, broker=args.broker, directory=Path(directory)
        )
    say(json.dumps(tally.as_json(), indent=2) if args.json else tally.table())
    return EXIT_FAILED if tally.failures or not tally.tried else EXIT_OK


def broker_acl(args: argparse.Namespace) -> int:
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
        say(f"wrote {path}")
    for user in users:
        say(f"  {user.name}: {user.what}")
    how = "its certificate (CN)" if args.tls else "its password in secrets/USER"
    say(f"each client connects as its user, with {how}; include mosquitto-husvakt.conf")
    return EXIT_OK


def _quarantine_files(args: argparse.Namespace) -> list[Path]:
    if args.db is not None:
        return [args.db]
    config = load_config(args.config)
    paths = [config.stream.quarantine]
    if config.gateway is not None:
        paths.append(config.gateway.quarantine)
    return [p for p in dict.fromkeys(paths) if p is not None and p.exists()]


def quarantine_command(args: argparse.Namespace) -> int:
    from gateway.quarantine import SqliteQuarantine  # noqa: PLC0415

    files = _quarantine_files(args)
    if not files:
        say("nothing quarantined (no quarantine file yet)")
        return EXIT_OK
    action = args.quarantine_command
    for path in files:
        store = SqliteQuarantine(path)
        try:
            if action == "purge":
                say(f"{path}: {store.purge(reason=args.reason)} entr(ies) deleted")
            elif action == "show":
                entry = store.get(args.id)
                if entry is None:
                    continue
                say(quarantine_entry(entry))
                return EXIT_OK
            else:
                entries = store.entries(reason=args.reason)
                if args.json:
                    say(quarantine_json(path, entries))
                    continue
                for line in quarantine_table(path, entries):
                    say(line)
        finally:
            store.close()
    if action == "show":
        sys.stderr.write(f"husvakt: no quarantine entry {args.id}\n")
        return EXIT_FAILED
    return EXIT_OK
