"""`husvakt backup`, `husvakt restore` and `husvakt doctor`."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any

from husvakt.backup import BackupError, backup, restore
from husvakt.cli.common import EXIT_FAILED, EXIT_OK, say
from husvakt.config import load_config

__all__ = ["add"]


def add(sub: Any) -> None:
    bk = sub.add_parser(
        "backup",
        help="copy the case store and rule state (online, while husvakt runs)",
        description="Copy the SQLite case store and the rule state into a new directory with "
        "SQLite's online backup, each copy checked and listed with its SHA-256 in "
        "manifest.json. husvakt keeps running. A PostgreSQL case store is backed up with "
        "pg_dump (the manifest says so).",
    )
    bk.add_argument("--config", type=Path, required=True, help="site config YAML")
    bk.add_argument("--out", type=Path, required=True, help="a new (or empty) directory")
    bk.set_defaults(run=backup_command)
    rs = sub.add_parser(
        "restore",
        help="put a backup back (stop husvakt first)",
        description="Verify a backup against its manifest and put its files where the config "
        "keeps them; each is written beside its target and moved into place. Existing files "
        "are replaced only with --force.",
    )
    rs.add_argument("--config", type=Path, required=True, help="site config YAML")
    rs.add_argument("--from", dest="source", type=Path, required=True, help="a backup directory")
    rs.add_argument("--force", action="store_true", help="replace the existing files")
    rs.set_defaults(run=restore_command)
    add_doctor(sub)


def backup_command(args: argparse.Namespace) -> int:
    config = load_config(args.config, cases=False)
    try:
        manifest = backup(config, args.out)
    except (BackupError, OSError, sqlite3.Error) as exc:
        sys.stderr.write(f"husvakt: backup failed: {exc}\n")
        return EXIT_FAILED
    for entry in manifest["files"]:  # type: ignore[attr-defined]
        say(f"{entry['name']}: {entry['bytes']:,} bytes from {entry['from']}")
    if "postgresql" in manifest:
        say(str(manifest["postgresql"]))
    say(f"backup in {args.out}")
    return EXIT_OK


def restore_command(args: argparse.Namespace) -> int:
    config = load_config(args.config, cases=False)
    try:
        restored = restore(config, args.source, force=args.force)
    except (BackupError, OSError, sqlite3.Error) as exc:
        sys.stderr.write(f"husvakt: {exc}\n")
        return EXIT_FAILED
    for path in restored:
        say(f"restored {path}")
    return EXIT_OK


def add_doctor(sub: Any) -> None:
    doc = sub.add_parser(
        "doctor",
        help="check that every broker, device, port, probe, store and server the config names "
        "is there and usable",
        description="Check every MQTT broker, Modbus device, serial port, 1-Wire probe, the "
        "case store, the SMTP server and each webhook the config names; one line each, with "
        "what to fix. Exit status 1 when anything failed.",
    )
    doc.add_argument("--config", type=Path, required=True, help="site config YAML")
    doc.set_defaults(run=doctor_command)


async def doctor_command(args: argparse.Namespace) -> int:
    from husvakt.doctor import examine  # noqa: PLC0415

    config = load_config(args.config, cases=False)
    findings = await examine(config, cases=True)
    for finding in findings:
        say(finding.line())
    failed = sum(not f.ok for f in findings)
    say(f"{len(findings) - failed} ok, {failed} failed")
    return EXIT_FAILED if failed else EXIT_OK
