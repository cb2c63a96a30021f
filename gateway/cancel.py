"""Keeping a cancellation from being swallowed by a library's error handling."""

from __future__ import annotations

import asyncio

__all__ = ["honour_cancellation"]


def honour_cancellation() -> None:
    """Re-raise a pending cancellation of the current task.

    Call it first in an `except` that retries, and after each round of a loop that talks to a
    broker or device: a cancellation can be swallowed (Python 3.11's `asyncio.wait_for`, which
    aiomqtt awaits a PUBACK with, loses one that arrives as the PUBACK does) or surface as the
    library's own error (pymodbus catches broadly around its transport; aiomqtt's disconnect
    times out as `MqttError`). A loop that carries on keeps a task running that was told to
    stop, and shutting down waits for it forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
