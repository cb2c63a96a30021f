"""The rate kind: `heat_rise` when the temperature climbs at `rate` °C per minute or faster,
or a condition of a site's own when any kind of value climbs at `rate` of its unit per minute."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from gateway.config import Duration
from gateway.config import format_duration as _duration
from gateway.models import Reading, Slug
from stream.kinds.base import (
    _EPOCH,
    DECIDED_BY,
    Episode,
    Inline,
    RuleKind,
    TitledRule,
    below_micros,
    dec_episode,
    enc_episode,
    episode_id,
    from_micros,
    is_late,
    is_threshold,
    make_alarm,
    micros,
    within_micros,
)
from stream.models import SEVERITY_RANK, Alarm, AlarmState, Severity

__all__ = [
    "KIND",
    "RiseRule",
    "RiseState",
    "evaluate",
    "rise_rate",
]


def _hair(level: float) -> float:
    """How close to a decision level a running-sum rate must be recomputed exactly."""
    return 1e-6 * max(1.0, abs(level))


class RiseRule(TitledRule):
    """Raise `heat_rise` when the temperature climbs at `rate` °C per minute or faster — or a
    condition of a site's own when any kind of value climbs at `rate` of its unit per minute
    (`{condition: co2_rising, kind: co2, rate: 100, window: 10m}`: a row with a `rate`).

    The rate is the least-squares slope of the good readings within `window`, from at least
    `min_samples` of them spanning at least `min_span` (a burst of lines that a stalled serial
    adapter delivers at once must not look like a jump); it clears once the slope is back below
    `clear_rate`.
    """

    condition: Slug
    rate: float = Field(default=8.3, gt=0, description="units (°C) per minute")
    critical_rate: float | None = Field(default=None, gt=0)
    clear_rate: float | None = Field(default=None, ge=0, description="default: half of rate")
    window: Duration = 120.0
    min_samples: int = Field(default=3, ge=2)
    min_span: Duration = 30.0

    @field_validator("condition")
    @classmethod
    def _a_rate_condition(cls, value: str) -> str:
        if value != "heat_rise" and (value in DECIDED_BY or not is_threshold(value)):
            raise ValueError(f"{value!r} is not a rate condition")
        return value

    @model_validator(mode="after")
    def _rates_are_consistent(self) -> Self:
        if self.clear_rate is not None and self.clear_rate >= self.rate:
            raise ValueError(f"'clear_rate' ({self.clear_rate}) must be below 'rate' ({self.rate})")
        if self.critical_rate is not None and self.critical_rate < self.rate:
            raise ValueError(
                f"'critical_rate' ({self.critical_rate}) must not be below 'rate' ({self.rate})"
            )
        if self.window <= 0:
            raise ValueError("'window' must be longer than 0 s")
        return self

    @property
    def clear_level(self) -> float:
        return self.clear_rate if self.clear_rate is not None else self.rate / 2


class RiseState:
    """The good samples within the window and their running sums, for a least-squares slope
    in O(1) amortised per reading however dense the samples (30,000 readings 1 ms apart cost
    no more each than one a minute). Times are kept as µs since the epoch (exact, and cheap to
    subtract); `samples` gives them back as datetimes for the codec and the tests. Mutable,
    unlike the other states: `_rise` updates it in place and returns it. The sums are
    recomputed exactly from the samples whenever as many samples have left the window as it
    holds (so rounding never accumulates), and the slope is recomputed exactly when it lies
    within a hair of a decision level."""

    __slots__ = (
        "_evicted",
        "_n",
        "_sx",
        "_sxx",
        "_sxy",
        "_sy",
        "base",
        "episode",
        "pushed",
        "times",
        "values",
    )

    def __init__(
        self,
        samples: Iterable[tuple[datetime, float]] = (),
        episode: Episode | None = None,
        pushed: int | None = None,
    ) -> None:
        #: the samples' times in µs since the epoch and their values, oldest first (read-only
        #: outside: `push` keeps them and the sums in step)
        self.times: deque[int] = deque()
        self.values: deque[float] = deque()
        for ts, value in samples:
            self.times.append(micros(ts))
            self.values.append(value)
        self.episode = episode
        #: samples pushed over the state's life: a store saves only those it has not yet
        self.pushed = len(self.times) if pushed is None else pushed
        self._resum()

    @classmethod
    def of_micros(
        cls,
        samples: Iterable[tuple[int, float]],
        episode: Episode | None = None,
        pushed: int | None = None,
    ) -> RiseState:
        """The state of samples timed in µs since the epoch (as a store's log keeps them)."""
        state = cls((), episode, 0)
        for us, value in samples:
            state.times.append(us)
            state.values.append(value)
        state.pushed = len(state.times) if pushed is None else pushed
        state._resum()
        return state

    @property
    def samples(self) -> list[tuple[datetime, float]]:
        return [(from_micros(us), v) for us, v in zip(self.times, self.values, strict=True)]

    def timed(self) -> Iterable[tuple[int, float]]:
        """The samples as (µs since the epoch, value), oldest first."""
        return zip(self.times, self.values, strict=True)

    def __len__(self) -> int:
        return len(self.times)

    def first(self) -> int | None:
        """The oldest sample's time in µs since the epoch (None: no samples)."""
        return self.times[0] if self.times else None

    def _resum(self) -> None:
        base = self.base = self.times[0] if self.times else 0
        n = sx = sy = sxx = sxy = 0.0
        for us, value in zip(self.times, self.values, strict=True):
            # seconds from the first sample, as `timedelta.total_seconds()` gives them: exactly
            # rounded from whole µs, so the sums are the same whichever way the time was taken
            x = (us - base) / 1e6
            n += 1
            sx += x
            sy += value
            sxx += x * x
            sxy += x * value
        self._n, self._sx, self._sy, self._sxx, self._sxy = n, sx, sy, sxx, sxy
        self._evicted = 0

    def push(self, us: int, value: float, window: float) -> None:
        """Add a sample taken at `us` µs since the epoch and drop those more than `window`
        seconds older than it."""
        self.pushed += 1
        times, values = self.times, self.values
        times.append(us)
        values.append(value)
        if len(times) == 1:
            self._resum()
            return
        x = (us - self.base) / 1e6  # as in `_resum`
        self._n += 1
        self._sx += x
        self._sy += value
        self._sxx += x * x
        self._sxy += x * value
        while (us - times[0]) / 1e6 > window:
            x = (times.popleft() - self.base) / 1e6
            old_value = values.popleft()
            self._n -= 1
            self._sx -= x
            self._sy -= old_value
            self._sxx -= x * x
            self._sxy -= x * old_value
            self._evicted += 1
        if self._evicted >= len(times):
            self._resum()

    def span(self) -> float:
        return (self.times[-1] - self.times[0]) / 1e6 if self.times else 0.0

    def exact_rate(self) -> float | None:
        """`rise_rate` of the samples, from their µs (the same seconds `total_seconds` gives)."""
        times = self.times
        if len(times) < 2:
            return None
        t0 = times[0]
        xs = [(t - t0) / 1e6 / 60 for t in times]
        return _slope(xs, list(self.values))

    def rate(self, levels: Iterable[float], near: Iterable[float] = ()) -> float | None:
        """The slope in °C per minute (None: no time span), exact when it lies within a hair
        of one of `levels` (`near`: the hair per level, when the caller has them ready)."""
        n = self._n
        sxx = self._sxx
        denominator = n * sxx - self._sx * self._sx
        if n < 2 or denominator <= 1e-9 * max(1.0, n * sxx):
            return self.exact_rate()
        rate = 60.0 * (n * self._sxy - self._sx * self._sy) / denominator
        for level, hair in zip(levels, near or map(_hair, levels), strict=True):
            if abs(rate - level) <= hair:
                return self.exact_rate()  # a decision at stake: exactly
        return rate

    def __repr__(self) -> str:
        return f"RiseState(samples={len(self.times)}, episode={self.episode!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RiseState):
            return NotImplemented
        return (self.times, self.values, self.episode, self.pushed) == (
            other.times,
            other.values,
            other.episode,
            other.pushed,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable


def rise_rate(samples: Sequence[tuple[datetime, float]]) -> float | None:
    """The least-squares slope of the samples in °C per minute (None: no time span)."""
    if len(samples) < 2:
        return None
    t0 = samples[0][0]
    return _slope([(t - t0).total_seconds() / 60 for t, _ in samples], [v for _, v in samples])


def _slope(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _levels(rule: RiseRule) -> tuple[float, ...]:
    return (rule.rate, rule.clear_level, rule.critical_rate or rule.rate)


def evaluate(
    state: RiseState,
    reading: Reading,
    rule: RiseRule,
    now: datetime,
    late_after: float,
) -> tuple[RiseState, list[Alarm]]:
    state.push(micros(reading.ts), reading.value, rule.window)
    if len(state) < rule.min_samples or state.span() < rule.min_span:
        return state, []
    rate = state.rate(_levels(rule))
    if rate is None or (state.episode is None and rate < rule.rate):
        return state, []  # the common case: not rising, nothing raised
    return _rise_decide(state, reading, rule, now, late_after, rate)


def _rise_decide(  # noqa: PLR0917 - the rise step with the rate it computed
    state: RiseState,
    reading: Reading,
    rule: RiseRule,
    now: datetime,
    late_after: float,
    rate: float,
) -> tuple[RiseState, list[Alarm]]:
    """A rate at or above the rule's, or any rate while raised: raise, update or clear."""
    ts = reading.ts
    episode = state.episode

    def alarm(episode: Episode, what: AlarmState, value: float, threshold: float) -> Alarm:
        return make_alarm(
            rule,
            rule.condition,
            episode,
            what,
            site=reading.site,
            sensor=reading.sensor,
            value=round(value, 2),
            threshold=threshold,
            ts=ts,
            late=is_late(reading, now, late_after),
        )

    def severity(rate: float) -> tuple[Severity, float]:
        if rule.critical_rate is not None and rate >= rule.critical_rate:
            return "critical", rule.critical_rate
        return "warning", rule.rate

    if episode is None:
        level, threshold = severity(rate)
        first = state.first()
        since = ts if first is None else from_micros(first)
        reason = f"rising {rate:.1f} {reading.unit}/min over {_duration(rule.window)}"
        state.episode = Episode(
            episode_id(rule, reading.site, reading.sensor, since), since, level, reason
        )
        return state, [alarm(state.episode, "raised", rate, threshold)]
    if rate < rule.clear_level:
        state.episode = None
        return state, [alarm(episode, "cleared", rate, rule.clear_level)]
    level, threshold = severity(rate)
    if SEVERITY_RANK[level] > SEVERITY_RANK[episode.severity]:
        state.episode = replace(episode, severity=level)
        return state, [alarm(state.episode, "updated", rate, threshold)]
    return state, []


#: `RiseState.push` and `RiseState.rate` written out, operation for operation (the very same
#: floats): a method call and its attribute traffic cost more than the arithmetic on the path
#: every reading takes. A running-sum rate further than a hair below the rule's (`P_low`) ends
#: the step before any other level is looked at; one within a hair of a level is recomputed
#: exactly.
_INLINE = """\
P_rise = states.get(P_id)
if P_rise.__class__ is not P_State:
    P_rise = states[P_id] = P_State()
if good:
    P_d = ts - P_EPOCH
    P_us = (P_d.days * 86_400 + P_d.seconds) * 1_000_000 + P_d.microseconds
    P_rise.pushed += 1
    P_times, P_values = P_rise.times, P_rise.values
    P_times.append(P_us)
    P_values.append(value)
    if len(P_times) == 1:
        P_rise._resum()
    else:
        P_base = P_rise.base
        P_x = (P_us - P_base) / 1e6
        P_n = P_rise._n + 1
        P_sx = P_rise._sx + P_x
        P_sy = P_rise._sy + value
        P_sxx = P_rise._sxx + P_x * P_x
        P_sxy = P_rise._sxy + P_x * value
        if P_us - P_times[0] > P_beyond:
            P_evicted = P_rise._evicted
            while P_us - P_times[0] > P_beyond:
                P_x = (P_times.popleft() - P_base) / 1e6
                P_old = P_values.popleft()
                P_n -= 1
                P_sx -= P_x
                P_sy -= P_old
                P_sxx -= P_x * P_x
                P_sxy -= P_x * P_old
                P_evicted += 1
            if P_evicted >= len(P_times):
                P_rise._resum()
                P_n, P_sx, P_sy = P_rise._n, P_rise._sx, P_rise._sy
                P_sxx, P_sxy = P_rise._sxx, P_rise._sxy
            else:
                P_rise._n, P_rise._sx, P_rise._sy = P_n, P_sx, P_sy
                P_rise._sxx, P_rise._sxy, P_rise._evicted = P_sxx, P_sxy, P_evicted
        else:
            P_rise._n, P_rise._sx, P_rise._sy, P_rise._sxx, P_rise._sxy = (
                P_n, P_sx, P_sy, P_sxx, P_sxy
            )
        if len(P_times) >= P_min_samples and P_us - P_times[0] > P_short:
            P_denominator = P_n * P_sxx - P_sx * P_sx
            P_scale = P_n * P_sxx
            if P_n < 2 or P_denominator <= 1e-9 * (P_scale if P_scale > 1.0 else 1.0):
                P_rate = P_rise.exact_rate()
            else:
                P_rate = 60.0 * (P_n * P_sxy - P_sx * P_sy) / P_denominator
                if P_rate < P_low and P_rise.episode is None:
                    P_rate = None  # the common case: well below the rate, nothing raised
                elif abs(P_rate - P_l0) <= P_h0 or abs(P_rate - P_l1) <= P_h1 or abs(
                    P_rate - P_l2
                ) <= P_h2:
                    P_rate = P_rise.exact_rate()  # a decision at stake: exactly
            if P_rate is not None and (P_rise.episode is not None or P_rate >= P_level):
                P_out = P_decide(P_rise, reading, P_rule, now, late_after, P_rate)[1]
                if P_out:
                    alarms += P_out
"""


def inline(rule: RiseRule, counter: bool) -> Inline:
    levels = _levels(rule)
    near = tuple(_hair(level) for level in levels)
    env = {
        "P_id": rule.id,
        "P_State": RiseState,
        "P_rule": rule,
        "P_EPOCH": _EPOCH,
        "P_beyond": within_micros(rule.window),
        "P_short": below_micros(rule.min_span),
        "P_min_samples": rule.min_samples,
        "P_level": rule.rate,
        # below this, a running-sum rate decides without an exact recomputation: it is
        # further than a hair below the rate, and without an episode no other level matters
        "P_low": levels[0] - near[0],
        "P_decide": _rise_decide,
    }
    for i, (level, hair) in enumerate(zip(levels, near, strict=True)):
        env[f"P_l{i}"], env[f"P_h{i}"] = level, hair
    return Inline(_INLINE, env)


def encode(s: RiseState, samples: bool) -> dict[str, Any]:
    return {
        "t": "rise",
        "samples": [[us, v] for us, v in s.timed()] if samples else [],
        "pushed": s.pushed,
        "episode": enc_episode(s.episode),
    }


def decode(d: dict[str, Any]) -> RiseState:
    return RiseState.of_micros(
        ((int(t), float(v)) for t, v in d["samples"]),
        pushed=d.get("pushed"),
        episode=dec_episode(d["episode"]),
    )


#: Rate-of-rise heat detectors respond at 8.3 °C/min (15 °F/min): REFERENCE.md.
KIND = RuleKind(
    name="rise",
    row=RiseRule,
    keys=("rate",),
    conditions={"heat_rise": {"en": "Rapid temperature rise", "sv": "Snabb temperaturökning"}},
    defaults=(RiseRule(id="heat-rise", condition="heat_rise"),),
    state=RiseState,
    tag="rise",
    initial=RiseState,
    evaluate=evaluate,
    inline=inline,
    encode=encode,
    decode=decode,
)
