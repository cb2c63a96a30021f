"""Sources: each speaks one protocol and hands `Sample`s to the gateway. They decide nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from gateway.normalize import Sample

__all__ = ["Emit", "Source"]

#: Where a source hands its samples — a run of them at once where it has several (the messages
#: an MQTT connection delivered together, a Modbus poll cycle); awaiting it is the back-pressure.
Emit = Callable[[Sequence[Sample]], Awaitable[None]]


class Source(Protocol):
    """One connection (a broker, a Modbus device, a serial line) and the sensors read over it."""

    @property
    def name(self) -> str: ...

    async def run(self, emit: Emit) -> None:
        """Read forever, reconnecting with backoff; returns only when cancelled."""
        ...
