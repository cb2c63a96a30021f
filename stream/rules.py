"""Pure rule semantics: `evaluate(state, reading, rule, now) -> (state, alarms)`.

Both engines (embedded and Faust) call this and nothing else decides; it reads no clock and does
no I/O, so a trace replayed through it gives the same alarms every time. Each rule kind
(`stream.kinds`, one module each) has its own state and decision; `tick` advances the
time-based kinds (offline) when no reading comes, and `evaluate_sensor` applies every rule of
one sensor to one reading, the screening kinds (fault) first, so that a reading they reject
(stuck, impossible jump) reaches the others as a fault reading.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.models import Reading
from stream.kinds import kind_of
from stream.kinds.base import Episode, RuleBase, StepFn, episode_id, from_micros, micros
from stream.kinds.fault import FaultState
from stream.kinds.gateway_offline import gateway_back, gateway_tick
from stream.kinds.meter import MeterState
from stream.kinds.offline import OfflineRule, OfflineState
from stream.kinds.offline import tick as _offline_tick
from stream.kinds.rise import RiseState, rise_rate
from stream.kinds.threshold import ThresholdState
from stream.models import Alarm

__all__ = [
    "Episode",
    "FaultState",
    "MeterState",
    "OfflineState",
    "RiseState",
    "State",
    "ThresholdState",
    "episode_id",
    "evaluate",
    "evaluate_sensor",
    "from_micros",
    "gateway_back",
    "gateway_tick",
    "initial_state",
    "micros",
    "rise_rate",
    "tick",
]

State = ThresholdState | RiseState | OfflineState | FaultState | MeterState

log = logging.getLogger("husvakt.stream.rules")


def initial_state(rule: RuleBase) -> State:
    kind = kind_of(rule)
    if kind.initial is None:
        raise TypeError(f"no per-sensor state for {type(rule).__name__}")
    state: State = kind.initial()
    return state


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
    """Advance a time-based rule to `now` with no reading (see `stream.kinds.offline.tick`)."""
    if not isinstance(rule, OfflineRule) or not isinstance(state, OfflineState):
        return state, []
    return _offline_tick(
        state, rule, now, site=site, sensor=sensor, held=held, grace_from=grace_from
    )


def evaluate(
    state: State, reading: Reading, rule: RuleBase, now: datetime, *, late_after: float = 300.0
) -> tuple[State, list[Alarm]]:
    """Advance one rule by one reading (taken in measurement-time order).

    Fault readings change no rule but a screening one (fault): a broken sensor can neither
    raise nor clear the other conditions. Between a level and its `clear` nothing changes
    either (hysteresis), so a value hovering at the line cannot flap the alarm.
    """
    if not rule.enabled:
        return state, []
    kind = kind_of(rule)
    if kind.evaluate is None or not isinstance(state, kind.state or ()):
        raise TypeError(f"{type(state).__name__} does not belong to {type(rule).__name__}")
    if reading.quality != "good" and not kind.screens:
        return state, []
    new: State
    new, alarms = kind.evaluate(state, reading, rule, now, late_after)
    return new, alarms


#: One rule's part in a sensor's pass: its step, its id, and whether it screens.
_Step = tuple[StepFn, str, bool]
#: Per rules tuple (by identity; the rule table hands out the same tuple per sensor): its
#: enabled rules' steps in evaluation order, the screening ones first. Bounded; rebuilt when
#: cleared.
_PLANS: dict[int, tuple[Sequence[RuleBase], tuple[_Step, ...]]] = {}
_MAX_PLANS = 4096


def _plan(rules: Sequence[RuleBase]) -> tuple[_Step, ...]:
    cached = _PLANS.get(id(rules))
    if cached is not None and cached[0] is rules:
        return cached[1]
    enabled = [(kind_of(r), r) for r in rules if r.enabled]
    counter = any(kind.counter for kind, _ in enabled)
    steps: list[_Step] = []
    for kind, rule in sorted(enabled, key=lambda pair: not pair[0].screens):
        if kind.step is None:
            raise TypeError(f"no per-sensor state for {type(rule).__name__}")
        steps.append((kind.step(rule, counter), rule.id, kind.screens))
    plan = tuple(steps)
    if isinstance(rules, tuple):  # immutable: safe to remember
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[id(rules)] = (rules, plan)
    return plan


def evaluate_sensor(
    states: dict[str, Any],
    reading: Reading,
    rules: Sequence[RuleBase],
    now: datetime,
    *,
    late_after: float = 300.0,
) -> tuple[dict[str, Any], list[Alarm]]:
    """Every rule of one sensor on one reading; `states` by rule id (missing = initial),
    updated in place and returned. A rule that fails on the reading starts from its initial
    state again; the sensor's other rules still see the reading.

    The screening rules go first: a reading one rejects (stuck, impossible jump) reaches the
    other rules as a fault reading. Each kind's step inlines its quiet case (nothing crosses,
    nothing raised) and hands every other case to the kind's own `evaluate`.
    """
    cached = _PLANS.get(id(rules))  # `_plan`, its common case inline
    plan = cached[1] if cached is not None and cached[0] is rules else _plan(rules)
    alarms: list[Alarm] = []
    good = reading.quality == "good"
    for run, rule_id, screens in plan:
        try:
            produced = run(states, reading, good, now, late_after)
        except Exception:
            # One rule that cannot take this reading must not mute the sensor for good: its
            # state starts again, and the sensor's other rules still see the reading.
            log.exception("rule %s failed on %s/%s; its state starts again",
                          rule_id, reading.site, reading.sensor)  # fmt: skip
            states.pop(rule_id, None)
            continue
        if produced:
            alarms.extend(produced)
        if screens and good and states[rule_id].rejected:
            reading = reading.model_copy(update={"quality": "fault", "fault": "implausible"})
            good = False
    return states, alarms
