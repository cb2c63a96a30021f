"""What every command group shares: argument types, where the case store is, how lines are
printed, the exit statuses, stopping on signals."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from casebridge.errors import CaseStoreError
from gateway.config import parse_duration
from husvakt.config import HusvaktConfig, load_config
from husvakt.metrics import parse_listen
from husvakt.output import for_terminal

if TYPE_CHECKING:
    from casebridge.store.sql import SqlCaseStore

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "address",
    "cli_store",
    "duration",
    "no_gateway",
    "program",
    "say",
    "setup_logging",
    "stop_on_signals",
    "store_options",
    "when",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def address(text: str) -> tuple[str, int]:
    """`HOST:PORT`."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def duration(text: str) -> float:
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


def when(text: str) -> datetime:
    """An ISO 8601 time; UTC when it names no zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def store_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", type=Path, help="SQLite case store file")
    where.add_argument("--config", type=Path, help="site config YAML (uses its case store)")


def cli_store(args: argparse.Namespace, *, create: bool = False) -> SqlCaseStore:
    """The case store `--db` or `--config` names."""
    # SQLAlchemy loads here, not at import: `husvakt gateway` on a small Pi never needs it.
    from casebridge.store.sql import SqliteCaseStore, open_store  # noqa: PLC0415

    if args.db is not None:
        if not create and not args.db.exists():
            raise CaseStoreError(f"{args.db}: no such case store")
        return SqliteCaseStore(Path(args.db))
    return open_store(load_config(args.config).cases)


#: What a JSON log line may carry besides its time, level, component and message.
LOG_FIELDS = ("site", "gateway", "sensor", "case", "condition")


def setup_logging(verbosity: int, log_format: str = "text") -> None:
    """Log to stderr: plain lines, or with `log_format` json one JSON object a line (`ts`,
    `level`, `component`, `message`, and `site`, `gateway`, `sensor`, `case`, `condition`
    where the line knows them) for a log collector."""
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter  # noqa: PLC0415 - only when asked

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "ts", "levelname": "level", "name": "component"},
                datefmt="%Y-%m-%dT%H:%M:%S%z",
                json_ensure_ascii=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL if verbosity < 2 else logging.DEBUG)


def say(text: str) -> None:
    """Every line the CLI prints: stored text may carry terminal control sequences."""
    sys.stdout.write(for_terminal(text) + "\n")


def program() -> str:
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


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def no_gateway(path: Path, command: str) -> int:
    sys.stderr.write(
        f"husvakt: {path} has no 'gateway' section; `husvakt {command}` reads sensors through "
        "one (a config without it is for `husvakt stream` or `husvakt cases serve`)\n"
    )
    return EXIT_FAILED


def metrics_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics, /healthz and /readyz there (default: the config's "
        "metrics.listen; none)",
    )


def metrics_listen(args: argparse.Namespace, config: HusvaktConfig) -> str | None:
    """Where to serve the metrics: --metrics, else the config's `metrics.listen`."""
    listen: str | None = getattr(args, "metrics", None) or config.metrics.listen
    if listen is not None:
        try:
            parse_listen(listen)
        except ValueError as exc:
            sys.stderr.write(f"husvakt: --metrics {exc}\n")
            raise SystemExit(EXIT_FAILED) from None
    return listen


class _Context(logging.Filter):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__()
        self._fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self._fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def log_context(**fields: str) -> None:
    """Every log line from here on knows these (a gateway's site and id), unless it says
    otherwise."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Context(fields))
