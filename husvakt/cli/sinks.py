"""`husvakt sinks` and `husvakt dynamics`: see how far each sink is behind, mirror now, check
a Dynamics 365 mapping against the live environment, and show what a case would send."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from casebridge.sinks.config import DynamicsSinkConfig
from gateway.clock import SystemClock
from gateway.models import format_ts
from husvakt.assemble import dynamics_client, open_cases, sinks_for
from husvakt.cli.common import EXIT_FAILED, EXIT_OK, say
from husvakt.config import HusvaktConfig, load_config

__all__ = ["add"]


def add(sub: Any) -> None:
    sinks = sub.add_parser(
        "sinks",
        help="external systems cases are mirrored to: status, mirror now",
        description="Every case change is mirrored to each sink in the config (a webhook, "
        "Dynamics 365) by the process that works the cases (husvakt run or stream).",
    )
    ssub = sinks.add_subparsers(dest="sinks_command", required=True, metavar="ACTION")
    status = ssub.add_parser(
        "status", help="cases waiting per sink, failing, since when it is unavailable, last error"
    )
    status.add_argument("--config", type=Path, required=True, help="site config YAML")
    status.set_defaults(run=sinks_status)
    sync = ssub.add_parser(
        "sync",
        help="mirror what is waiting now, then stop (or --follow)",
        description="Mirror every waiting case change to the sinks, then exit 0 (1 if some "
        "could not be mirrored). Safe beside a running husvakt: every write is idempotent.",
    )
    sync.add_argument("--config", type=Path, required=True, help="site config YAML")
    sync.add_argument("--sink", help="only this sink")
    sync.add_argument("--follow", action="store_true", help="keep mirroring until stopped")
    sync.set_defaults(run=sinks_sync)

    dynamics = sub.add_parser(
        "dynamics",
        help="the Dynamics 365 sink: check its mapping, explain a case",
        description="Check a Dynamics 365 sink's config against the environment, or show the "
        "Web API requests a case would make.",
    )
    dsub = dynamics.add_subparsers(dest="dynamics_command", required=True, metavar="ACTION")
    check = dsub.add_parser(
        "check",
        help="sign in and check the mapping against the live metadata",
        description="Sign in, then check the table, its columns and alternate key, change "
        "tracking, option values, and the mapped accounts and subjects. Exit 1 on a problem.",
    )
    check.add_argument("--config", type=Path, required=True, help="site config YAML")
    check.add_argument("--sink", help="the sink's id (default: the only Dynamics sink)")
    check.set_defaults(run=dynamics_check)
    explain = dsub.add_parser(
        "explain",
        help="show the requests a case would send (nothing is sent)",
        description="Print the Web API requests that mirror CASE as it is now, with its "
        "events that have not been mirrored. Nothing is sent.",
    )
    explain.add_argument("case", help="case id, e.g. HV-2026-000123")
    explain.add_argument("--config", type=Path, required=True, help="site config YAML")
    explain.add_argument("--sink", help="the sink's id (default: the only Dynamics sink)")
    explain.set_defaults(run=dynamics_explain)


def _dynamics(config: HusvaktConfig, wanted: str | None) -> DynamicsSinkConfig:
    found = [
        s for s in config.sinks if isinstance(s, DynamicsSinkConfig) and wanted in (None, s.id)
    ]
    if len(found) != 1:
        names = ", ".join(s.id for s in config.sinks if isinstance(s, DynamicsSinkConfig))
        raise SystemExit(
            f"husvakt: name one Dynamics sink with --sink ({names or 'the config has none'})"
        )
    return found[0]


async def dynamics_check(args: argparse.Namespace) -> int:
    from casebridge.sinks.dynamics.check import check  # noqa: PLC0415 - msal extra

    sink = _dynamics(load_config(args.config), args.sink)
    client = dynamics_client(sink)
    try:
        findings = await check(client)
    finally:
        await client.aclose()
    for finding in findings:
        say(f"{'ok     ' if finding.ok else 'PROBLEM'} {finding.text}")
    bad = sum(not f.ok for f in findings)
    say(f"{bad} problem(s)" if bad else "the mapping fits the environment")
    return EXIT_FAILED if bad else EXIT_OK


async def dynamics_explain(args: argparse.Namespace) -> int:
    from casebridge.sinks.dynamics.sink import plan  # noqa: PLC0415 - msal extra

    config = load_config(args.config)
    sink = _dynamics(config, args.sink)
    store = await open_cases(config)
    try:
        case = await store.get_case(args.case)
        if case is None:
            say(f"husvakt: no case {args.case}")
            return EXIT_FAILED
        synced, remote = await store.sink_progress(sink.id, case.id)
        events = await store.events_since(case.id, synced)
    finally:
        await store.aclose()
    for request in plan(sink, case, events, remote):
        say(f"{request.method} {sink.api}{request.path}")
        for name, value in request.headers:
            say(f"{name}: {value}")
        if request.body is not None:
            say(json.dumps(request.body, indent=2, ensure_ascii=False))
        say("")
    return EXIT_OK


async def sinks_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = await open_cases(config)
    try:
        now = SystemClock().now()
        for sink in config.sinks:
            status = await store.sink_status(sink.id, now)
            age = "-" if status.oldest_change_age is None else f"{status.oldest_change_age:.0f} s"
            down = (
                f"; UNAVAILABLE since {format_ts(status.down_since)}"
                if status.down_since is not None
                else ""
            )
            say(
                f"{sink.id} ({sink.type}): {status.waiting} case(s) waiting, "
                f"{status.failing} failing, oldest change {age}{down}"
                + (f"; last error: {status.last_error}" if status.last_error else "")
            )
    finally:
        await store.aclose()
    return EXIT_OK


async def sinks_sync(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    clock = SystemClock()
    store = await open_cases(config)
    try:
        runners = sinks_for(config, store=store, clock=clock, only=args.sink)
        if not runners:
            say("husvakt: no such sink in the config")
            return EXIT_FAILED
        if args.follow:  # each runner lets go of its connections when it stops
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            async with asyncio.TaskGroup() as tg:
                for runner in runners:
                    tg.create_task(runner.run(stop), name=f"sink {runner.id}")
            return EXIT_OK
        behind = 0
        for runner in runners:
            try:
                await runner.start()
                done = await runner.run_due(clock.now())
            finally:
                await runner.aclose()
            status = await store.sink_status(runner.id, clock.now())
            say(f"{runner.id}: {done} case(s) mirrored, {status.waiting} waiting")
            behind += status.waiting
        return EXIT_FAILED if behind else EXIT_OK
    finally:
        await store.aclose()
