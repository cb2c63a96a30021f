"""A Raspberry Pi has no real-time clock: until NTP syncs after a boot, its clock is wrong
(fake-hwclock sets it to the last shutdown, so it is behind by the whole outage).

The gateway asks whether the clock is synchronised — `auto`: systemd-timesyncd's own file
(`/run/systemd/timesync/synchronized`) where timesyncd runs, else the kernel's status when an
NTP client keeps it (`adjtimex`), else it trusts the clock; `kernel`; a file of your own
naming; or `off`. While it is not, readings are held in the outbox's file (as durably as any
reading) with the monotonic time they were taken at and the boot they were taken in; when the
clock syncs (and steps), each held reading gets its true time — the synced clock minus how long
ago, by the monotonic clock, it was taken — and goes on to the outbox. So no reading reaches
the rules with a wrong time. A gateway restarted before the sync (a crash, an update) holds
on to them; after a reboot their monotonic times mean nothing, so they are quarantined
(`held-across-reboot`), never sent with a guessed time. A clock that never syncs (a Pi with no
network) is trusted after `max_hold`, rather than silencing the sensors; held readings beyond
`hold` are dropped, oldest first, and counted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from pathlib import Path

__all__ = ["BOOT_ID", "TIMESYNCD_FILE", "boot_id", "clock_synced", "kernel_synced"]

log = logging.getLogger("husvakt.gateway.clock")

TIMESYNCD_FILE = Path("/run/systemd/timesync/synchronized")
TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
#: the kernel's random id of this boot: the monotonic clock counts from the boot it names
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This boot's id ("" when the kernel does not say: then no held reading outlives the
    process that took it)."""
    try:
        return BOOT_ID.read_text(encoding="ascii").strip()[:64]
    except (OSError, ValueError):
        return ""


def kernel_synced() -> bool | None:
    """The kernel's word (adjtimex): True synchronised, False not, None unknown."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex, modes 0: only read
        state = int(libc.adjtimex(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR


def _ntp_client_runs() -> bool:
    pids = ("/run/chrony", "/run/chronyd.pid", "/run/ntpd.pid", "/var/run/ntpd.pid")
    return any(Path(p).exists() for p in pids)


def clock_synced(mode: str) -> Callable[[], bool]:
    """A check for `mode`: `auto`, `kernel`, `off`, or the path of a file that exists once
    the clock is synchronised."""
    if mode == "off":
        return lambda: True
    if mode == "kernel":
        return lambda: kernel_synced() is not False
    if mode != "auto":
        path = Path(mode)
        return path.exists
    if TIMESYNCD_FILE.parent.exists():  # systemd-timesyncd runs: its file says
        return TIMESYNCD_FILE.exists
    if _ntp_client_runs():
        return lambda: kernel_synced() is not False
    return lambda: True  # nothing keeps the clock: trust it as it is
