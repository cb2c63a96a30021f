"""The `husvakt` command line: one module per command group (`runtime`, `cases`, `explain`,
`safety`), what they print in `render`, what they share in `common`. Each group registers
its parsers with the function that runs them; `main` parses, runs and turns the errors a
user can fix into one line and an exit status."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import logging
import sys
from collections.abc import Sequence

from casebridge.errors import CaseStoreError, SinkSetupError, WebhookSecretError
from gateway.configfile import ConfigError
from husvakt import __version__
from husvakt.cli import cases, explain, maintain, readings, report, runtime, safety, sinks
from husvakt.cli.common import EXIT_FAILED, setup_logging

__all__ = ["main"]


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="husvakt",
        description="Watch buildings through their sensors and turn trouble into cases.",
    )
    root.add_argument("--version", action="version", version=f"husvakt {__version__}")
    root.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    root.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text (default) or as one JSON object a line, for a log collector",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (runtime, safety, explain, cases, readings, report, sinks, maintain):
        group.add(sub)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.verbose, args.log_format)
    try:
        outcome = args.run(args)
        if inspect.iscoroutine(outcome):
            outcome = asyncio.run(outcome)
        return int(outcome)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
        sys.stderr.write(f"husvakt: {len(exc.problems)} problem(s) in the configuration\n")
        return EXIT_FAILED
    except (CaseStoreError, SinkSetupError, WebhookSecretError) as exc:
        sys.stderr.write(f"husvakt: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
