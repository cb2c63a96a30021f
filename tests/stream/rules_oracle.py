"""The reference rules: `stream.rules` as it was before its fast path (immutable states, one
function per rule kind, every reading through the whole dispatch), kept as the oracle the fast
implementation is proven against (tests/stream/test_rules_equivalence.py). Not used by the
product. Its state classes are its own; compare them with `stream.rules` field by field.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
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
    "initial_state",
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
    no more each than one a minute). Mutable, unlike the other states: `_rise` updates it in
    place and returns it. The sums are recomputed exactly from the samples whenever as many
    samples have left the window as it holds (so rounding never accumulates), and the slope
    is recomputed exactly when it lies within a hair of a decision level."""

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
        "samples",
    )

    def __init__(
        self,
        samples: Iterable[tuple[datetime, float]] = (),
        episode: Episode | None = None,
        pushed: int | None = None,
    ) -> None:
        self.samples: deque[tuple[datetime, float]] = deque(samples)
        self.episode = episode
        #: samples pushed over the state's life: a store saves only those it has not yet
        self.pushed = len(self.samples) if pushed is None else pushed
        self._resum()

    def _resum(self) -> None:
        self.base = self.samples[0][0] if self.samples else None
        self._n = self._sx = self._sy = self._sxx = self._sxy = 0.0
        self._evicted = 0
        for ts, value in self.samples:
            self._add(ts, value)

    def _x(self, ts: datetime) -> float:
        assert self.base is not None
        return (ts - self.base).total_seconds()

    def _add(self, ts: datetime, value: float) -> None:
        x = self._x(ts)
        self._n += 1
        self._sx += x
        self._sy += value
        self._sxx += x * x
        self._sxy += x * value

    def push(self, ts: datetime, value: float, window: float) -> None:
        """Add a sample and drop those more than `window` seconds older than it."""
        self.pushed += 1
        if not self.samples:
            self.samples.append((ts, value))
            self._resum()
            return
        self.samples.append((ts, value))
        self._add(ts, value)
        while self.samples and (ts - self.samples[0][0]).total_seconds() > window:
            old_ts, old_value = self.samples.popleft()
            x = self._x(old_ts)
            self._n -= 1
            self._sx -= x
            self._sy -= old_value
            self._sxx -= x * x
            self._sxy -= x * old_value
            self._evicted += 1
        if self._evicted >= len(self.samples):
            self._resum()

    def span(self) -> float:
        return (self.samples[-1][0] - self.samples[0][0]).total_seconds() if self.samples else 0.0

    def rate(self, levels: Iterable[float]) -> float | None:
        """The slope in °C per minute (None: no time span)."""
        n = self._n
        denominator = n * self._sxx - self._sx * self._sx
        if n < 2 or denominator <= 1e-9 * max(1.0, n * self._sxx):
            return rise_rate(tuple(self.samples))
        rate = 60.0 * (n * self._sxy - self._sx * self._sy) / denominator
        if any(abs(rate - level) <= 1e-6 * max(1.0, abs(level)) for level in levels):
            return rise_rate(tuple(self.samples))  # a decision at stake: exactly
        return rate

    def __repr__(self) -> str:
        return f"RiseState(samples={len(self.samples)}, episode={self.episode!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RiseState):
            return NotImplemented
        return (self.samples, self.episode, self.pushed) == (
            other.samples,
            other.episode,
            other.pushed,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable


@dataclass(frozen=True, slots=True)
class OfflineState:
    last_good: datetime | None = None
    episode: Episode | None = None


@dataclass(frozen=True, slots=True)
class FaultState:
    """`rejected` says the last reading was unusable (fault, stuck or jumped); `jumped` is a
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
    xs = [(t - t0).total_seconds() / 60 for t, _ in samples]
    ys = [v for _, v in samples]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _rise(
    state: RiseState, reading: Reading, rule: RiseRule, now: datetime, late_after: float
) -> tuple[RiseState, list[Alarm]]:
    ts = reading.ts
    state.push(ts, reading.value, rule.window)
    levels = (rule.rate, rule.clear_level, rule.critical_rate or rule.rate)
    enough = len(state.samples) >= rule.min_samples and state.span() >= rule.min_span
    rate = state.rate(levels) if enough else None

    def alarm(episode: Episode, what: AlarmState, value: float, threshold: float) -> Alarm:
        return _alarm(
            rule,
            "heat_rise",
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

    def shown() -> float:
        # what an alarm says is the exact slope; the running sums only decide, and only where
        # no decision is at stake
        exact = rise_rate(tuple(state.samples))
        return rate if exact is None else exact

    episode = state.episode
    if rate is None:
        return state, []
    if episode is None:
        if rate < rule.rate:
            return state, []
        level, threshold = severity(rate)
        since = state.samples[0][0]
        reason = f"rising {shown():.1f} °C/min over {_duration(rule.window)}"
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


# --- offline -----------------------------------------------------------------------------------


def _offline(
    state: OfflineState, reading: Reading, rule: OfflineRule, now: datetime, late_after: float
) -> tuple[OfflineState, list[Alarm]]:
    if reading.quality != "good":
        return state, []
    last = reading.ts if state.last_good is None else max(state.last_good, reading.ts)
    if state.episode is None:
        return (state if last == state.last_good else OfflineState(last)), []
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


def evaluate_sensor(
    states: Mapping[str, State],
    reading: Reading,
    rules: Sequence[RuleBase],
    now: datetime,
    *,
    late_after: float = 300.0,
) -> tuple[dict[str, State], list[Alarm]]:
    """Every rule of one sensor on one reading; `states` by rule id (missing = initial).

    The fault rule goes first: a reading it rejects (stuck, impossible jump) reaches the other
    rules as a fault reading.
    """
    new_states = dict(states)
    alarms: list[Alarm] = []
    ordered = sorted(rules, key=lambda r: not isinstance(r, FaultRule))
    for rule in ordered:
        current = new_states.get(rule.id)
        state = current if current is not None else initial_state(rule)
        new, produced = evaluate(state, reading, rule, now, late_after=late_after)
        # an initial state that did not change need not be kept; a RiseState changes in place
        if new is not current and (new is not state or isinstance(new, RiseState)):
            new_states[rule.id] = new
        alarms.extend(produced)
        if isinstance(new, FaultState) and new.rejected and reading.quality == "good":
            reading = reading.model_copy(update={"quality": "fault", "fault": "implausible"})
    return new_states, alarms
