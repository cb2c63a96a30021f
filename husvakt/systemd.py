"""Telling systemd how a service is: readiness, stopping, and the watchdog (`sd_notify(3)`).

Under a unit with `Type=notify`, systemd sets `NOTIFY_SOCKET`; a service says `READY=1` once
it works (the gateway's sources and uplink started, the stream subscribed, the web serving)
and `STOPPING=1` as it stops. With `WatchdogSec=`, systemd also sets `WATCHDOG_USEC` and
expects `WATCHDOG=1` at least that often: the pings come from the event loop itself, so a
loop that hangs stops pinging and systemd restarts the service. Without `NOTIFY_SOCKET` (a
terminal, a test) every call does nothing. The protocol is one datagram per message on a
UNIX socket (a path, or `@` for the abstract namespace).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["notify", "supervise_faust", "supervised", "watchdog_every", "watchdog_pings"]

log = logging.getLogger("husvakt.systemd")


def notify(*states: str) -> bool:
    """Send `states` (`READY=1`, `STOPPING=1`, `STATUS=…`) to systemd; False when not under
    systemd or the socket refuses (a notification is never worth failing for)."""
    where = os.environ.get("NOTIFY_SOCKET")
    if not where or not states:
        return False
    address = "\0" + where[1:] if where.startswith("@") else where
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError as exc:
        log.warning("telling systemd %s failed: %s", states, exc)
        return False
    return True


def watchdog_every() -> float | None:
    """How often to ping systemd's watchdog (half its interval), or None when it is off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process
    return int(usec) / 1e6 / 2


async def watchdog_pings(stop: asyncio.Event) -> None:
    """Ping the watchdog from this event loop until `stop` (nothing when it is off)."""
    every = watchdog_every()
    if every is None:
        return
    while not stop.is_set():
        notify("WATCHDOG=1")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


@contextlib.asynccontextmanager
async def supervised(stop: asyncio.Event, ready: asyncio.Event) -> AsyncIterator[None]:
    """While the body runs: `READY=1` once `ready` is set, the watchdog's pings, and
    `STOPPING=1` when it ends."""

    async def when_ready() -> None:
        await ready.wait()
        notify("READY=1", "STATUS=running")

    tasks = [
        asyncio.create_task(when_ready(), name="systemd ready"),
        asyncio.create_task(watchdog_pings(stop), name="systemd watchdog"),
    ]
    try:
        yield
    finally:
        notify("STOPPING=1")
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def supervise_faust(app: Any, ready: asyncio.Event | None = None) -> None:
    """`supervised` for a Faust worker, which owns its event loop and its signals: a task of
    `app` says `READY=1` (Faust starts its tasks once its tables are recovered; `ready`, when
    given, must be set too), pings the watchdog from Faust's loop, and says `STOPPING=1` when
    Faust stops its tasks."""

    async def supervise() -> None:
        try:
            if ready is not None:
                await ready.wait()
            notify("READY=1", "STATUS=running")
            await watchdog_pings(asyncio.Event())  # returns at once when the watchdog is off
            await asyncio.Future()  # until Faust cancels its tasks as it stops
        finally:
            notify("STOPPING=1")

    app.task(supervise)
