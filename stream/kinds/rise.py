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


#: The running sums are recomputed from the samples once this many times as many samples as
#: the window holds have left it: often enough that rounding never builds up (the times stay
#: within a few windows of the base), rarely enough to cost little per reading.
RESUM = 8


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
    no more each than one a minute). Times are kept as whole µs after `base` (µs since the
    epoch of the oldest sample when the sums were last recomputed; `base_ts` the same time as
    a datetime): exact, and small numbers to subtract. `samples` gives them back as datetimes
    for the codec and the tests, `timed` as µs since the epoch. Mutable, unlike the other
    states: `_rise` updates it in place and returns it. The sums are recomputed exactly from
    the samples whenever `RESUM` times as many samples have left the window as it holds (so
    rounding never builds up), and the slope is recomputed exactly when it lies within a hair
    of a decision level; an alarm shows the exact slope."""

    __slots__ = (
        "base",
        "base_ts",
        "episode",
        "offsets",
        "pushed",
        "sums",
        "values",
    )

    def __init__(
        self,
        samples: Iterable[tuple[datetime, float]] = (),
        episode: Episode | None = None,
        pushed: int | None = None,
    ) -> None:
        self._fill(((micros(ts), value) for ts, value in samples), episode, pushed)

    def _fill(
        self, timed: Iterable[tuple[int, float]], episode: Episode | None, pushed: int | None
    ) -> None:
        #: the samples' times in µs after `base` and their values, oldest first (read-only
        #: outside: `push` keeps them and the sums in step)
        self.offsets: deque[int] = deque()
        self.values: deque[float] = deque()
        self.base, self.base_ts = 0, _EPOCH
        for us, value in timed:
            self.offsets.append(us)
            self.values.append(value)
        self.episode = episode
        #: samples pushed over the state's life: a store saves only those it has not yet
        self.pushed = len(self.offsets) if pushed is None else pushed
        self._resum()

    @classmethod
    def of_micros(
        cls,
        samples: Iterable[tuple[int, float]],
        episode: Episode | None = None,
        pushed: int | None = None,
    ) -> RiseState:
        """The state of samples timed in µs since the epoch (as a store's log keeps them)."""
        state = cls.__new__(cls)
        state._fill(samples, episode, pushed)
        return state

    @property
    def samples(self) -> list[tuple[datetime, float]]:
        return [(from_micros(us), v) for us, v in self.timed()]

    def timed(self) -> Iterable[tuple[int, float]]:
        """The samples as (µs since the epoch, value), oldest first."""
        base = self.base
        return ((base + d, v) for d, v in zip(self.offsets, self.values, strict=True))

    def __len__(self) -> int:
        return len(self.offsets)

    def first(self) -> int | None:
        """The oldest sample's time in µs since the epoch (None: no samples)."""
        return self.base + self.offsets[0] if self.offsets else None

    def _resum(self) -> None:
        """The sums recomputed from the samples, and the oldest made the base."""
        offsets = self.offsets
        shift = offsets[0] if offsets else 0
        if shift:
            self.offsets = offsets = deque(d - shift for d in offsets)
            self.base += shift
            self.base_ts = from_micros(self.base)
        sx = sy = sxx = sxy = 0.0
        for d, value in zip(offsets, self.values, strict=True):
            # seconds from the first sample, as `timedelta.total_seconds()` gives them: exactly
            # rounded from whole µs, so the sums are the same whichever way the time was taken
            x = d / 1e6
            sx += x
            sy += value
            sxx += x * x
            sxy += x * value
        #: Σx, Σy, Σx², Σxy of the samples (x: seconds after `base`; their count is the
        #: window's length) and the samples that left the window since they were recomputed
        self.sums = (sx, sy, sxx, sxy, 0)

    def push(self, us: int, value: float, window: float) -> None:
        """Add a sample taken at `us` µs since the epoch and drop those more than `window`
        seconds older than it."""
        self.pushed += 1
        offsets, values = self.offsets, self.values
        if not offsets:
            self.base, self.base_ts = us, from_micros(us)
        d = us - self.base
        offsets.append(d)
        values.append(value)
        if len(offsets) == 1:
            self._resum()
            return
        x = d / 1e6  # as in `_resum`
        sx, sy, sxx, sxy, evicted = self.sums
        sx += x
        sy += value
        sxx += x * x
        sxy += x * value
        while (d - offsets[0]) / 1e6 > window:
            x = offsets.popleft() / 1e6
            old_value = values.popleft()
            sx -= x
            sy -= old_value
            sxx -= x * x
            sxy -= x * old_value
            evicted += 1
        if evicted >= RESUM * len(offsets):
            self._resum()
        else:
            self.sums = (sx, sy, sxx, sxy, evicted)

    def span(self) -> float:
        offsets = self.offsets
        return (offsets[-1] - offsets[0]) / 1e6 if offsets else 0.0

    def exact_rate(self) -> float | None:
        """`rise_rate` of the samples, from their µs (the same seconds `total_seconds` gives)."""
        offsets = self.offsets
        if len(offsets) < 2:
            return None
        d0 = offsets[0]
        xs = [(d - d0) / 1e6 / 60 for d in offsets]
        return _slope(xs, list(self.values))

    def rate(self, levels: Iterable[float]) -> float | None:
        """The slope in °C per minute (None: no time span), exact when it lies within a hair
        of one of `levels`."""
        n = len(self.offsets)
        sx, sy, sxx, sxy, _ = self.sums
        scale = n * sxx
        denominator = scale - sx * sx
        if n < 2 or denominator <= 1e-9 * max(1.0, scale):
            return self.exact_rate()
        rate = 60.0 * (n * sxy - sx * sy) / denominator
        for level in levels:
            if abs(rate - level) <= _hair(level):
                return self.exact_rate()  # a decision at stake: exactly
        return rate

    def __repr__(self) -> str:
        return f"RiseState(samples={len(self.offsets)}, episode={self.episode!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RiseState):
            return NotImplemented
        return (list(self.timed()), self.episode, self.pushed) == (
            list(other.timed()),
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

    def shown() -> float:
        # what an alarm says is the exact slope: the running sums only decide, and only where
        # no decision is at stake, so when they are recomputed changes no alarm
        exact = state.exact_rate()
        return rate if exact is None else exact

    if episode is None:
        level, threshold = severity(rate)
        first = state.first()
        since = ts if first is None else from_micros(first)
        reason = f"rising {shown():.1f} {reading.unit}/min over {_duration(rule.window)}"
        state.episode = Episode(
            episode_id(rule, reading.site, reading.sensor, since), since, level, reason
        )
        return state, [alarm(state.episode, "raised", shown(), threshold)]
    if rate < rule.clear_level:
        state.episode = None
        return state, [alarm(episode, "cleared", shown(), rule.clear_level)]
    level, threshold = severity(rate)
    if SEVERITY_RANK[level] > SEVERITY_RANK[episode.severity]:
        state.episode = replace(episode, severity=level)
        return state, [alarm(state.episode, "updated", shown(), threshold)]
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
    P_rise.pushed += 1
    P_offsets, P_values = P_rise.offsets, P_rise.values
    if P_offsets:
        P_d = ts - P_rise.base_ts
        P_d = (P_d.days * 86_400 + P_d.seconds) * 1_000_000 + P_d.microseconds
        P_offsets.append(P_d)
        P_values.append(value)
        P_x = P_d / 1e6
        P_sx, P_sy, P_sxx, P_sxy, P_evicted = P_rise.sums
        P_sx += P_x
        P_sy += value
        P_sxx += P_x * P_x
        P_sxy += P_x * value
        P_age = P_d - P_offsets[0]
        if P_age > P_beyond:
            while P_age > P_beyond:
                P_x = P_offsets.popleft() / 1e6
                P_old = P_values.popleft()
                P_sx -= P_x
                P_sy -= P_old
                P_sxx -= P_x * P_x
                P_sxy -= P_x * P_old
                P_evicted += 1
                P_age = P_d - P_offsets[0]
            if P_evicted >= P_RESUM * len(P_offsets):
                P_rise._resum()
                P_sx, P_sy, P_sxx, P_sxy, P_evicted = P_rise.sums
            else:
                P_rise.sums = (P_sx, P_sy, P_sxx, P_sxy, P_evicted)
        else:
            P_rise.sums = (P_sx, P_sy, P_sxx, P_sxy, P_evicted)
        P_n = len(P_offsets)
        if P_n >= P_min_samples and P_age > P_short:
            P_scale = P_n * P_sxx
            P_denominator = P_scale - P_sx * P_sx
            if P_denominator <= 1e-9 * (P_scale if P_scale > 1.0 else 1.0):
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
    else:
        P_d = ts - P_EPOCH
        P_rise.base = (P_d.days * 86_400 + P_d.seconds) * 1_000_000 + P_d.microseconds
        P_rise.base_ts = ts
        P_offsets.append(0)
        P_values.append(value)
        P_rise._resum()
"""


def inline(rule: RiseRule, counter: bool) -> Inline:
    levels = _levels(rule)
    near = tuple(_hair(level) for level in levels)
    env = {
        "P_id": rule.id,
        "P_State": RiseState,
        "P_rule": rule,
        "P_EPOCH": _EPOCH,
        "P_RESUM": RESUM,
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
