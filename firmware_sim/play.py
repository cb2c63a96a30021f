"""Playing a scenario live: the clock a simulated device runs on, and a device's outputs as
they come due (pushed by MQTT and serial devices, read on demand from Modbus registers).

Every live device follows a `Scenario`'s outputs — the one signal model that replay, `husvakt
sim`, `husvakt demo` and the test fixtures share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime
from typing import Protocol

from firmware_sim.scenario import Output

__all__ = ["Clock", "Playback", "play"]


class Clock(Protocol):
    """The time source a simulated device runs on (the demo passes an accelerated one)."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


async def play(
    outputs: Iterable[Output], clock: Clock, act: Callable[[Output], Awaitable[None]]
) -> None:
    """Hand each output to `act` when its moment comes on `clock` (at once when it is past)."""
    for output in outputs:
        delay = (output.when - clock.now()).total_seconds()
        if delay > 0:
            await clock.sleep(delay)
        await act(output)


class Playback:
    """A device's outputs as a readout: what it shows at a moment is its latest output at or
    before that moment (a Modbus register or a 1-Wire file, read whenever the reader polls).
    Reads must come in time order, as a clock's do; outputs are generated only as far as
    they are read."""

    def __init__(self, outputs: Iterable[Output]) -> None:
        self._outputs: Iterator[Output] = iter(outputs)
        self._next = next(self._outputs, None)
        self._current: Output | None = None

    def at(self, when: datetime) -> Output | None:
        """The latest output at or before `when`; None before the first."""
        while self._next is not None and self._next.when <= when:
            self._current, self._next = self._next, next(self._outputs, None)
        return self._current
