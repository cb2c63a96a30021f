"""`husvakt cases` (list, show, serve) and `husvakt users`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

from casebridge.models import OPEN_STATUSES, CaseStatus, Language, Role, User
from casebridge.store import CaseFilter
from gateway.clock import SystemClock
from husvakt.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    cli_store,
    duration,
    metrics_listen,
    metrics_option,
    say,
    store_options,
)
from husvakt.cli.render import case_json, case_text, user_line
from husvakt.config import load_config
from husvakt.metrics import Metrics, metrics_served
from husvakt.output import cases_json, cases_table
from husvakt.systemd import supervised

__all__ = ["add"]


def add(sub: Any) -> None:
    cases = sub.add_parser(
        "cases", help="list and inspect cases", description="Work with the case store."
    )
    cases_sub = cases.add_subparsers(dest="cases_command", required=True, metavar="ACTION")
    listing = cases_sub.add_parser(
        "list", help="list cases", description="List cases, oldest first."
    )
    listing.set_defaults(run=cases_list)
    show = cases_sub.add_parser(
        "show", help="show one case with its timeline", description="Show a case and its timeline."
    )
    show.add_argument("case_id", help="e.g. HV-2026-000001")
    show.set_defaults(run=cases_show)
    for p in (listing, show):
        store_options(p)
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
    metrics_option(serve)
    serve.set_defaults(run=cases_serve)
    _add_users(sub)


def _add_users(sub: Any) -> None:
    users = sub.add_parser(
        "users",
        help="manage users and their API tokens",
        description="People who use the case API and receive notifications.",
    )
    users.set_defaults(run=users_command)
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser(
        "add", help="add or update a user", description="Add or update a user."
    )
    add.add_argument("user_id", help="a lowercase id, as used in the config's teams")
    add.add_argument("--name", required=True, help="full name")
    add.add_argument("--email", help="where notifications go")
    add.add_argument(
        "--role",
        choices=get_args(Role),
        default="technician",
        help="what they may do (default %(default)s)",
    )
    add.add_argument(
        "--language", choices=get_args(Language), default="en", help="of the web pages (default en)"
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
        "--expires", type=duration, default=None, metavar="DURATION", help="e.g. 90d, 12h"
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
        store_options(p)


async def cases_list(args: argparse.Namespace) -> int:
    store = cli_store(args)
    await store.start()
    try:
        statuses: Sequence[CaseStatus] | None = OPEN_STATUSES if args.open else None
        cases = await store.list_cases(CaseFilter(statuses=statuses))
    finally:
        await store.aclose()
    say(cases_json(cases) if args.json else cases_table(cases))
    return EXIT_OK


async def cases_show(args: argparse.Namespace) -> int:
    store = cli_store(args)
    await store.start()
    try:
        case = await store.get_case(args.case_id)
        events = await store.timeline(args.case_id) if case else []
    finally:
        await store.aclose()
    if case is None:
        sys.stderr.write(f"husvakt: no case {args.case_id}\n")
        return EXIT_FAILED
    say(case_json(case, events) if args.json else case_text(case, events))
    return EXIT_OK


async def cases_serve(args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - keep `husvakt --help` fast

    from husvakt.assemble import case_web_app, open_cases  # noqa: PLC0415

    config = load_config(args.config)
    store = await open_cases(config)
    app = case_web_app(config, store=store, clock=SystemClock())
    stop, started = asyncio.Event(), asyncio.Event()

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                started.set()  # listening: systemd hears READY

    server = Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info"))
    metrics = Metrics()
    try:
        async with (
            metrics_served(metrics, metrics_listen(args, config), stop),
            supervised(stop, started),
        ):
            try:
                await server.serve()
            finally:
                stop.set()
    finally:
        await store.aclose()
    return EXIT_OK


async def users_command(args: argparse.Namespace) -> int:
    from casebridge.auth import hash_password, hash_token, new_token  # noqa: PLC0415

    store = cli_store(args, create=args.users_command == "add")
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
            say(f"user {user.id} ({user.role}) saved in {store.description}")
        elif args.users_command == "password":
            source = args.password_file.open(encoding="utf-8") if args.password_file else sys.stdin
            with source:
                secret = source.readline().rstrip("\n")
            if len(secret) < 8:
                sys.stderr.write("husvakt: a password needs at least 8 characters\n")
                return EXIT_FAILED
            await store.set_password(args.user_id, hash_password(secret))
            say(f"password set for {args.user_id}")
        elif args.users_command == "token":
            token = new_token()
            until = now + timedelta(seconds=args.expires) if args.expires else None
            await store.add_token(
                args.user_id, hash_token(token), label=args.label, now=now, expires_at=until
            )
            expiry = f", expires {until:%Y-%m-%d %H:%M} UTC" if until else ""
            sys.stderr.write(f"token for {args.user_id} (shown once; keep it secret{expiry}):\n")
            say(token)
        elif args.users_command == "revoke":
            ended, deleted = await store.revoke(
                args.user_id, sessions_too=not args.token, tokens_too=not args.sessions
            )
            say(f"{args.user_id}: {ended} web session(s) ended, {deleted} API token(s) deleted")
        else:
            for u in await store.list_users():
                say(user_line(u))
    finally:
        await store.aclose()
    return EXIT_OK
