"""Pure rule semantics: `evaluate(state, reading, rule, now) -> (state, alarms)`.

Both engines (embedded and Faust) call this and nothing else decides; it reads no clock and does
no I/O, so a trace replayed through it gives the same alarms every time. Each rule kind has its
own immutable state; `tick` advances the time-based kinds (offline) when no reading comes, and
`evaluate_sensor` applies every rule of one sensor to one reading, the fault rule first so that
a reading it rejects (stuck, impossible jump) reaches the others as a fault reading.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from gateway.config import format_duration as _duration
from gateway.models import Reading
from stream.config import (
    FaultRule,
    GatewayOfflineRule,
    OfflineRule,
    RiseRule,
    RuleBase,
    ThresholdRule,
)
from stream.models import SEVERITY_RANK, Alarm, AlarmState, Condition, Severity

__all__ = [
    "Episode",
    "FaultState",
    "OfflineState",
    "RiseState",
    "State",
    "ThresholdState",
    "episode_id",
    "evaluate",
    "evaluate_sensor",
    "from_micros",
    "initial_state",
    "micros",
    "rise_rate",
    "tick",
]


@dataclass(frozen=True, slots=True)
class Episode:
    """One raise→clear episode: its stable id, when the condition began, how bad it is."""

    id: str
    since: datetime
    severity: Severity
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ThresholdState:
    """`since` is when the value first crossed the level (pending or raised); `transitions`
    the raise/clear times within the flap window; `back_since` when a flapping value got back
    past `clear` (it clears once it has stayed there for `stable`)."""

    phase: Literal["idle", "pending", "raised"] = "idle"
    since: datetime | None = None
    episode: Episode | None = None
    transitions: tuple[datetime, ...] = ()
    flapping: bool = False
    back_since: datetime | None = None


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


@dataclass(slots=True)
class OfflineState:
    """Mutable: a good reading moves `last_good` in place."""

    last_good: datetime | None = None
    episode: Episode | None = None


@dataclass(slots=True)
class FaultState:
    """Mutable: an ordinary good reading updates it in place. `rejected` says the last reading
    was unusable (fault, stuck or jumped); `jumped` is a
    reading that jumped from `ref`, held back until the next reading says whether the jump was
    real (the values stay there) or a spike (they are back near `ref`)."""

    run: int = 0
    good_run: int = 0
    ref: tuple[datetime, float] | None = None
    stuck_since: datetime | None = None
    stuck_value: float | None = None
    rejected: bool = False
    episode: Episode | None = None
    jumped: tuple[datetime, float] | None = None


State = ThresholdState | RiseState | OfflineState | FaultState


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _hair(level: float) -> float:
    """How close to a decision level a running-sum rate must be recomputed exactly."""
    return 1e-6 * max(1.0, abs(level))


def micros(ts: datetime) -> int:
    """µs since the epoch, exactly: how rate of rise and stored states keep time."""
    d = ts - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def from_micros(us: int) -> datetime:
    """The UTC time `us` µs after the epoch (the inverse of `micros`)."""
    return _EPOCH + timedelta(microseconds=us)


def initial_state(rule: RuleBase) -> State:
    if isinstance(rule, ThresholdRule):
        return ThresholdState()
    if isinstance(rule, RiseRule):
        return RiseState()
    if isinstance(rule, OfflineRule):
        return OfflineState()
    if isinstance(rule, FaultRule):
        return FaultState()
    raise TypeError(f"no per-sensor state for {type(rule).__name__}")


def episode_id(rule: RuleBase, site: str, sensor: str, since: datetime) -> str:
    return f"{rule.id}:{site}:{sensor}:{since.strftime('%Y%m%dT%H%M%SZ')}"


def _alarm(
    rule: RuleBase,
    condition: Condition,
    episode: Episode,
    what: AlarmState,
    *,
    site: str,
    sensor: str,
    value: float,
    threshold: float,
    ts: datetime,
    late: bool = False,
    flapping: bool = False,
) -> Alarm:
    return Alarm(
        episode=episode.id,
        site=site,
        sensor=sensor,
        condition=condition,
        state=what,
        severity=episode.severity,
        value=value,
        threshold=threshold,
        rule=rule.id,
        started_at=episode.since,
        ts=ts,
        late=late,
        flapping=flapping,
        reason=episode.reason,
    )


def _late(reading: Reading, now: datetime, late_after: float) -> bool:
    return (now - reading.ts).total_seconds() > late_after


# --- thresholds --------------------------------------------------------------------------------


def _beyond(value: float, level: float, rule: ThresholdRule) -> bool:
    return value <= level if rule.below is not None else value > level


def _back(value: float, rule: ThresholdRule) -> bool:
    assert rule.clear is not None, "validated: enabled rules have a clear level"
    return value >= rule.clear if rule.below is not None else value <= rule.clear


def _severity(value: float, rule: ThresholdRule) -> tuple[Severity, float]:
    if rule.critical is not None and _beyond(value, rule.critical, rule):
        return "critical", rule.critical
    return "warning", rule.level


def _recent(times: tuple[datetime, ...], now: datetime, window: float) -> tuple[datetime, ...]:
    return tuple(t for t in times if (now - t).total_seconds() <= window)


def _threshold(
    state: ThresholdState, reading: Reading, rule: ThresholdRule, now: datetime, late_after: float
) -> tuple[ThresholdState, list[Alarm]]:
    value, ts = reading.value, reading.ts
    assert rule.clear is not None, "validated: enabled rules have a clear level"

    def alarm(new: ThresholdState, what: AlarmState, threshold: float) -> Alarm:
        assert new.episode is not None, "only raised states alarm"
        return _alarm(
            rule,
            rule.condition,
            new.episode,
            what,
            site=reading.site,
            sensor=reading.sensor,
            value=value,
            threshold=threshold,
            ts=ts,
            late=_late(reading, now, late_after),
            flapping=new.flapping,
        )

    if state.phase == "raised":
        if not _back(value, rule):
            escalated = state if state.back_since is None else replace(state, back_since=None)
            severity, threshold = _severity(value, rule)
            episode = state.episode
            if episode is not None and SEVERITY_RANK[severity] > SEVERITY_RANK[episode.severity]:
                escalated = replace(escalated, episode=replace(episode, severity=severity))
                return escalated, [alarm(escalated, "updated", threshold)]
            return escalated, []
        if state.flapping:
            back_since = state.back_since or ts
            if (ts - back_since).total_seconds() < rule.stable:
                return replace(state, back_since=back_since), []
            cleared = replace(state, flapping=False)
            return ThresholdState(transitions=_recent(state.transitions, ts, rule.flap_window)), [
                alarm(cleared, "cleared", rule.clear)
            ]
        transitions = _recent((*state.transitions, ts), ts, rule.flap_window)
        if rule.flap_count and len(transitions) >= rule.flap_count:
            assert state.episode is not None
            reason = (
                f"flapping: {len(transitions)} raise/clear changes within "
                f"{_duration(rule.flap_window)}; stays raised until the value has stayed past "
                f"{rule.clear:g} for {_duration(rule.stable)}"
            )
            flapping = replace(
                state,
                transitions=transitions,
                flapping=True,
                back_since=ts,
                episode=replace(state.episode, reason=reason),
            )
            return flapping, [alarm(flapping, "updated", rule.clear)]
        return ThresholdState(transitions=transitions), [alarm(state, "cleared", rule.clear)]

    if not _beyond(value, rule.level, rule):
        # idle, or a pending crossing that did not last
        if state.phase == "idle":
            return state, []
        return ThresholdState(transitions=state.transitions), []
    since = state.since if state.phase == "pending" and state.since is not None else ts
    if (ts - since).total_seconds() < rule.hold:
        if state.phase == "pending":
            return state, []
        return ThresholdState(phase="pending", since=since, transitions=state.transitions), []
    severity, threshold = _severity(value, rule)
    raised = ThresholdState(
        phase="raised",
        since=since,
        episode=Episode(episode_id(rule, reading.site, reading.sensor, since), since, severity),
        transitions=_recent((*state.transitions, ts), ts, rule.flap_window),
    )
    return raised, [alarm(raised, "raised", threshold)]


# --- rate of rise ------------------------------------------------------------------------------


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


def _rise(
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
        return _alarm(
            rule,
            rule.condition,
            episode,
            what,
            site=reading.site,
            sensor=reading.sensor,
            value=round(value, 2),
            threshold=threshold,
            ts=ts,
            late=_late(reading, now, late_after),
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


# --- offline -----------------------------------------------------------------------------------


def _offline(
    state: OfflineState, reading: Reading, rule: OfflineRule, now: datetime, late_after: float
) -> tuple[OfflineState, list[Alarm]]:
    if reading.quality != "good":
        return state, []
    last = reading.ts if state.last_good is None else max(state.last_good, reading.ts)
    if state.episode is None:
        state.last_good = last  # in place: the common case, a sensor that reports
        return state, []
    silent = (reading.ts - state.episode.since).total_seconds()
    cleared = _alarm(
        rule,
        "sensor_offline",
        state.episode,
        "cleared",
        site=reading.site,
        sensor=reading.sensor,
        value=round(silent, 1),
        threshold=rule.after,
        ts=reading.ts,
        late=_late(reading, now, late_after),
    )
    return OfflineState(last), [cleared]


def tick(
    state: State,
    rule: RuleBase,
    now: datetime,
    *,
    site: str,
    sensor: str,
    held: bool = False,
    grace_from: datetime | None = None,
) -> tuple[State, list[Alarm]]:
    """Advance a time-based rule to `now` with no reading. `held`: the engine holds this
    sensor's offline alarm back (its gateway is offline, or it has a sensor fault raised);
    `grace_from`: silence before this instant does not count (the gateway just came back and
    its backlog may still be on the way)."""
    if not isinstance(rule, OfflineRule) or not isinstance(state, OfflineState):
        return state, []
    if state.episode is not None or held or state.last_good is None:
        return state, []
    since = state.last_good if grace_from is None else max(state.last_good, grace_from)
    silent = (now - since).total_seconds()
    if silent <= rule.after:
        return state, []
    start = state.last_good
    reason = f"no good reading for {_duration((now - start).total_seconds())}"
    episode = Episode(episode_id(rule, site, sensor, start), start, "warning", reason)
    raised = _alarm(
        rule,
        "sensor_offline",
        episode,
        "raised",
        site=site,
        sensor=sensor,
        value=round((now - start).total_seconds(), 1),
        threshold=rule.after,
        ts=now,
    )
    return OfflineState(state.last_good, episode), [raised]


def gateway_tick(
    episode: Episode | None,
    rule: GatewayOfflineRule,
    now: datetime,
    *,
    site: str,
    gateway: str,
    contact: datetime | None,
    said_offline: datetime | None = None,
) -> tuple[Episode | None, list[Alarm]]:
    """Raise `gateway_offline` once: the gateway said so (its last will, at `said_offline`), or
    nothing has come from it since `contact` for longer than the rule allows."""
    if episode is not None or contact is None:
        return episode, []
    if said_offline is not None:
        since, reason = said_offline, "the gateway reported itself offline (last will)"
    elif (now - contact).total_seconds() > rule.after:
        since = contact
        reason = f"nothing from the gateway for {_duration((now - contact).total_seconds())}"
    else:
        return None, []
    episode = Episode(episode_id(rule, site, gateway, since), since, "warning", reason)
    return episode, [
        _alarm(
            rule,
            "gateway_offline",
            episode,
            "raised",
            site=site,
            sensor=gateway,
            value=round((now - contact).total_seconds(), 1),
            threshold=rule.after,
            ts=now,
        )
    ]


def gateway_back(
    episode: Episode, rule: GatewayOfflineRule, now: datetime, *, site: str, gateway: str
) -> Alarm:
    """The `cleared` alarm when an offline gateway is heard from again."""
    return _alarm(
        rule,
        "gateway_offline",
        episode,
        "cleared",
        site=site,
        sensor=gateway,
        value=round((now - episode.since).total_seconds(), 1),
        threshold=rule.after,
        ts=now,
    )


# --- sensor faults -----------------------------------------------------------------------------


def _fault(
    state: FaultState, reading: Reading, rule: FaultRule, now: datetime, late_after: float
) -> tuple[FaultState, list[Alarm]]:
    ts, value = reading.ts, reading.value

    def raise_(new: FaultState, reason: str, threshold: float) -> tuple[FaultState, list[Alarm]]:
        if new.episode is not None:
            return new, []
        episode = Episode(episode_id(rule, reading.site, reading.sensor, ts), ts, "warning", reason)
        raised = replace(new, episode=episode)
        return raised, [
            _alarm(
                rule,
                "sensor_fault",
                episode,
                "raised",
                site=reading.site,
                sensor=reading.sensor,
                value=value,
                threshold=threshold,
                ts=ts,
                late=_late(reading, now, late_after),
            )
        ]

    if reading.quality == "fault":
        new = replace(state, run=state.run + 1, good_run=0, rejected=True)
        if rule.faults and new.run >= rule.faults:
            return raise_(new, f"{new.run} fault readings in a row ({reading.fault})", rule.faults)
        return new, []
    raised: list[Alarm] = []
    if rule.jump is not None and state.jumped is not None and state.ref is not None:
        # The reading after a jump decides: still near the jumped value and away from the
        # old one, the change was real (a fire), and this reading counts; otherwise the jump
        # was a spike, which is the fault.
        jumped, ref = state.jumped, state.ref
        if abs(value - jumped[1]) <= rule.jump < abs(value - ref[1]):
            state = replace(state, jumped=None, ref=None, stuck_since=None, stuck_value=None)
        else:
            step = jumped[1] - ref[1]
            seconds = (jumped[0] - ref[0]).total_seconds()
            reason = f"impossible jump of {step:+.1f} °C in {seconds:g} s"
            if abs(value - ref[1]) > rule.jump:  # jumped again: hold this one back too
                new = replace(state, good_run=0, rejected=True, jumped=(ts, value))
                return raise_(new, reason, rule.jump)
            state, raised = raise_(replace(state, jumped=None, good_run=0), reason, rule.jump)
    elif (
        rule.jump is not None
        and state.ref is not None
        and (ts - state.ref[0]).total_seconds() <= rule.jump_within
        and abs(value - state.ref[1]) > rule.jump
    ):
        return replace(state, good_run=0, rejected=True, jumped=(ts, value)), []
    if state.stuck_value is not None and abs(value - state.stuck_value) <= rule.stuck_tolerance:
        stuck_since, stuck_value = state.stuck_since, state.stuck_value
    else:
        stuck_since, stuck_value = ts, value
    assert stuck_since is not None
    if rule.stuck is not None and (ts - stuck_since).total_seconds() >= rule.stuck:
        new = replace(state, good_run=0, rejected=True, stuck_since=stuck_since)
        reason = f"value stuck at {value:g} for {_duration((ts - stuck_since).total_seconds())}"
        new, stuck = raise_(new, reason, rule.stuck)
        return new, raised + stuck
    good = FaultState(
        good_run=state.good_run + 1,
        ref=(ts, value),
        stuck_since=stuck_since,
        stuck_value=stuck_value,
        episode=state.episode,
    )
    if raised:
        return good, raised
    if state.episode is not None and good.good_run >= rule.clear_after:
        cleared = _alarm(
            rule,
            "sensor_fault",
            state.episode,
            "cleared",
            site=reading.site,
            sensor=reading.sensor,
            value=value,
            threshold=float(rule.clear_after),
            ts=ts,
            late=_late(reading, now, late_after),
        )
        return replace(good, episode=None), [cleared]
    return good, []


# --- dispatch ----------------------------------------------------------------------------------


def evaluate(
    state: State, reading: Reading, rule: RuleBase, now: datetime, *, late_after: float = 300.0
) -> tuple[State, list[Alarm]]:
    """Advance one rule by one reading (taken in measurement-time order).

    Fault readings change no threshold, rise or offline rule: a broken sensor can neither raise
    nor clear those conditions. Between a level and its `clear` nothing changes either
    (hysteresis), so a value hovering at the line cannot flap the alarm.
    """
    if not rule.enabled:
        return state, []
    if isinstance(rule, FaultRule) and isinstance(state, FaultState):
        return _fault(state, reading, rule, now, late_after)
    if reading.quality != "good":
        return state, []
    if isinstance(rule, ThresholdRule) and isinstance(state, ThresholdState):
        return _threshold(state, reading, rule, now, late_after)
    if isinstance(rule, RiseRule) and isinstance(state, RiseState):
        return _rise(state, reading, rule, now, late_after)
    if isinstance(rule, OfflineRule) and isinstance(state, OfflineState):
        return _offline(state, reading, rule, now, late_after)
    raise TypeError(f"{type(state).__name__} does not belong to {type(rule).__name__}")


_FAULT, _THRESHOLD, _RISE, _OFFLINE = range(4)
_IDLE = ThresholdState()
#: One rule's step in a sensor's pass: its kind, the rule, its id, and what its quiet case
#: compares against — a threshold: (level, below); a rise: (window, min_samples, min_span,
#: rate, decision levels, their hairs); a fault rule: (jump, jump_within, stuck,
#: stuck_tolerance); offline: ().
_Step = tuple[int, RuleBase, str, tuple[object, ...]]
#: Per rules tuple (by identity; the rule table hands out the same tuple per sensor): its
#: enabled rules in evaluation order. Bounded; rebuilt when cleared.
_PLANS: dict[int, tuple[Sequence[RuleBase], tuple[_Step, ...]]] = {}
_MAX_PLANS = 4096


def _plan(rules: Sequence[RuleBase]) -> tuple[_Step, ...]:
    cached = _PLANS.get(id(rules))
    if cached is not None and cached[0] is rules:
        return cached[1]
    steps: list[_Step] = []
    for rule in sorted(rules, key=lambda r: not isinstance(r, FaultRule)):
        if not rule.enabled:
            continue
        if isinstance(rule, FaultRule):
            quiet: tuple[object, ...] = (
                rule.jump,
                rule.jump_within,
                rule.stuck,
                rule.stuck_tolerance,
            )
            steps.append((_FAULT, rule, rule.id, quiet))
        elif isinstance(rule, ThresholdRule):
            steps.append((_THRESHOLD, rule, rule.id, (rule.level, rule.below is not None)))
        elif isinstance(rule, RiseRule):
            levels = _levels(rule)
            hairs = tuple(_hair(level) for level in levels)
            quiet = (rule.window, rule.min_samples, rule.min_span, rule.rate, levels, hairs)
            steps.append((_RISE, rule, rule.id, quiet))
        elif isinstance(rule, OfflineRule):
            steps.append((_OFFLINE, rule, rule.id, ()))
        else:
            raise TypeError(f"no per-sensor state for {type(rule).__name__}")
    plan = tuple(steps)
    if isinstance(rules, tuple):  # immutable: safe to remember
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[id(rules)] = (rules, plan)
    return plan


def evaluate_sensor(  # noqa: PLR0912, PLR0915 - one pass over a sensor's rules: the hot path
    states: dict[str, State],
    reading: Reading,
    rules: Sequence[RuleBase],
    now: datetime,
    *,
    late_after: float = 300.0,
) -> tuple[dict[str, State], list[Alarm]]:
    """Every rule of one sensor on one reading; `states` by rule id (missing = initial),
    updated in place and returned.

    The fault rule goes first: a reading it rejects (stuck, impossible jump) reaches the other
    rules as a fault reading. An idle threshold state is not kept (missing means idle). The
    quiet cases — nothing crosses, nothing raised — are inlined here (the same tests as the
    rule kinds' own functions make, cheapest first); every other case goes to the rule kind's
    own function.
    """
    alarms: list[Alarm] = []
    good = reading.quality == "good"
    value, ts = reading.value, reading.ts
    for kind, rule, rule_id, quiet in _plan(rules):
        state = states.get(rule_id)
        if kind == _THRESHOLD:
            if not good:
                continue
            if state is None or state.phase == "idle":  # type: ignore[union-attr]
                level, below = quiet
                if not (value <= level if below else value > level):  # type: ignore[operator]
                    continue  # idle, and staying so
            current = state if state is not None else _IDLE
            new, produced = _threshold(current, reading, rule, now, late_after)  # type: ignore[arg-type]
            if new is not current:
                states[rule_id] = new
        elif kind == _FAULT:
            if state.__class__ is not FaultState:
                state = states[rule_id] = FaultState()
            fault: FaultState = state
            if good and fault.jumped is None and fault.episode is None:
                # `_fault`'s common case, in place: a plausible reading, no jump, not stuck
                jump, jump_within, stuck, tolerance = quiet
                ref = fault.ref
                if (
                    jump is None
                    or ref is None
                    or abs(value - ref[1]) <= jump  # type: ignore[operator]
                    or (ts - ref[0]).total_seconds() > jump_within  # type: ignore[operator]
                ):
                    stuck_value = fault.stuck_value
                    if stuck_value is not None and abs(value - stuck_value) <= tolerance:  # type: ignore[operator]
                        stuck_since = fault.stuck_since
                        assert stuck_since is not None
                        held = (ts - stuck_since).total_seconds()
                    else:
                        stuck_since, stuck_value, held = ts, value, 0.0
                    if stuck is None or held < stuck:  # type: ignore[operator]
                        fault.run, fault.good_run, fault.rejected = 0, fault.good_run + 1, False
                        fault.ref, fault.stuck_since = (ts, value), stuck_since
                        fault.stuck_value = stuck_value
                        continue
            fault, produced = _fault(fault, reading, rule, now, late_after)  # type: ignore[arg-type]
            states[rule_id] = fault
            if fault.rejected and good:
                reading = reading.model_copy(update={"quality": "fault", "fault": "implausible"})
                good = False
        elif kind == _RISE:
            if state.__class__ is not RiseState:
                state = states[rule_id] = RiseState()
            if not good:
                continue
            rise: RiseState = state
            window, min_samples, min_span, rate_level, levels, near = quiet
            rise.push(micros(ts), value, window)  # type: ignore[arg-type]
            times = rise.times
            if len(times) < min_samples or (times[-1] - times[0]) / 1e6 < min_span:  # type: ignore[operator]
                continue
            rate = rise.rate(levels, near)  # type: ignore[arg-type]
            if rate is None or (rise.episode is None and rate < rate_level):  # type: ignore[operator]
                continue  # the common case: not rising, nothing raised
            _, produced = _rise_decide(rise, reading, rule, now, late_after, rate)  # type: ignore[arg-type]
        else:
            if not good:
                continue
            if state.__class__ is OfflineState and state.episode is None:
                last = state.last_good
                if last is None or ts > last:
                    state.last_good = ts
                continue
            offline = state if isinstance(state, OfflineState) else OfflineState()
            offline, produced = _offline(offline, reading, rule, now, late_after)  # type: ignore[arg-type]
            states[rule_id] = offline
        if produced:
            alarms.extend(produced)
    return states, alarms
