"""Capped, jittered exponential backoff for reconnecting to devices and brokers."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


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
