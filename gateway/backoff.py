"""Capped, jittered exponential backoff, and the one reconnect-forever loop every connection
of husvakt runs in (brokers, Kafka, serial ports)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import NoReturn

from gateway.cancel import honour_cancellation

__all__ = ["Backoff", "reconnect_forever"]


class Backoff:
    """Delays of `initial·2ⁿ`, capped at `cap`, with ±`jitter` spread so that many gateways
    coming back after a power cut do not reconnect in lockstep."""

    def __init__(
        self,
        *,
        initial: float = 0.5,
        cap: float = 30.0,
        jitter: float = 0.25,
        rng: random.Random | None = None,
    ) -> None:
        self._initial = initial
        self._cap = cap
        self._jitter = jitter
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self) -> float:
        base: float = min(self._cap, self._initial * 2.0**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        spread: float = self._rng.uniform(-self._jitter, self._jitter)
        return base * (1 + spread)


async def reconnect_forever(
    session: Callable[[Backoff], Awaitable[None]],
    *,
    errors: tuple[type[BaseException], ...],
    what: str,
    log: logging.Logger,
    state: Callable[[], str] = lambda: "",
    cap: float = 30.0,
) -> NoReturn:
    """Run `session` again and again: it connects, calls `backoff.reset()` once connected, and
    works until the connection fails with one of `errors` (or ends). Between sessions it waits
    the backoff's next delay, logging what is unavailable (`what`), why, and `state()` (e.g.
    how much is buffered meanwhile). Returns only when cancelled."""
    backoff = Backoff(cap=cap)
    while True:
        try:
            await session(backoff)
            reason = "connection ended"
        except errors as exc:
            honour_cancellation()
            reason = str(exc) or type(exc).__name__
        delay = backoff.next_delay()
        log.warning("%s unavailable (%s)%s; retrying in %.1fs", what, reason, state(), delay)
        await asyncio.sleep(delay)
