"""Pure rule semantics: `evaluate(state, reading, rule, now) -> (state, alarms)`.

Both engines (embedded and Faust) call this and nothing else decides; it reads no clock and does
no I/O, so a trace replayed through it gives the same alarms every time. Each rule kind
(`stream.kinds`, one module each) has its own state and decision; `tick` advances the
time-based kinds (offline) when no reading comes, and `evaluate_sensor` applies every rule of
one sensor to one reading, the screening kinds (fault) first, so that a reading they reject
(stuck, impossible jump) reaches the others as a fault reading.
"""

from __future__ import annotations

import hashlib
import linecache
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from gateway.models import Reading
from stream.kinds import kind_of
from stream.kinds.base import Episode, Inline, RuleBase, episode_id, from_micros, micros
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
    "Rules",
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


#: A sensor's pass: `(states by rule id, reading, now, late_after) -> its alarms`, every rule of
#: the sensor in one function (`_compile`).
SensorPass = Callable[[dict[str, Any], Reading, datetime, float], list[Alarm]]
#: Per rules tuple other than `Rules` (by identity): its pass. Bounded; rebuilt when cleared.
_PLANS: dict[int, tuple[Sequence[RuleBase], SensorPass]] = {}
_MAX_PLANS = 4096
#: A kind without `inline`: its step, called.
_CALL = """\
P_out = P_step(states, reading, good, now, late_after)
if P_out:
    alarms += P_out
"""
_PREFIX = re.compile(r"\bP_")


class Rules(tuple[RuleBase, ...]):
    """A sensor's rules as the rule table hands them out (one per distinct choice of rows:
    sensors ruled alike share it), with their pass compiled once."""

    sensor_pass: SensorPass

    def __new__(cls, rules: Iterable[RuleBase]) -> Rules:
        self = super().__new__(cls, rules)
        self.sensor_pass = _compile_rules(self)
        return self


def _plan(rules: Sequence[RuleBase]) -> SensorPass:
    """The pass of rules given other than as `Rules` (cached per tuple)."""
    cached = _PLANS.get(id(rules))
    if cached is not None and cached[0] is rules:
        return cached[1]
    run = _compile_rules(rules)
    if isinstance(rules, tuple):  # immutable: safe to remember
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[id(rules)] = (rules, run)
    return run


def _compile_rules(rules: Sequence[RuleBase]) -> SensorPass:
    enabled = [(kind_of(r), r) for r in rules if r.enabled]
    counter = any(kind.counter for kind, _ in enabled)
    parts: list[tuple[Inline, str, bool]] = []
    for kind, rule in sorted(enabled, key=lambda pair: not pair[0].screens):
        if kind.inline is not None:
            part = kind.inline(rule, counter)
        elif kind.step is not None:
            part = Inline(_CALL, {"P_step": kind.step(rule, counter)})
        else:
            raise TypeError(f"no per-sensor state for {type(rule).__name__}")
        parts.append((part, rule.id, kind.screens))
    return _compile(parts)


def _compile(parts: Sequence[tuple[Inline, str, bool]]) -> SensorPass:
    """One function of the rules' statements, each rule's in its own `try` (a rule that fails
    on a reading starts from its initial state again; the sensor's other rules still see the
    reading), the screening rules first: a reading one rejects reaches the rest as a fault
    reading. Its source is kept where tracebacks and debuggers find it."""
    lines = [
        "def sensor_pass(states, reading, now, late_after):",
        "    alarms = []",
        '    good = reading.quality == "good"',
        "    value = reading.value",
        "    ts = reading.ts",
    ]
    env: dict[str, Any] = {"_failed": _failed, "_faulty": _faulty}
    for i, (part, rule_id, screens) in enumerate(parts):
        prefix = f"r{i}_"
        env.update({_PREFIX.sub(prefix, name): value for name, value in part.env.items()})
        env[f"_id{i}"] = rule_id  # not `r{i}_…`: those names are the part's
        lines.append("    try:")
        lines += [
            f"        {line}" if line else ""
            for line in _PREFIX.sub(prefix, part.source).splitlines()
        ]
        lines += ["    except Exception:", f"        _failed(states, _id{i}, reading)"]
        if screens:
            lines += [
                "    else:",
                f"        if good and states[_id{i}].rejected:",
                "            reading = _faulty(reading)",
                "            good = False",
            ]
    lines.append("    return alarms")
    source = "\n".join(lines) + "\n"
    filename = f"<husvakt rules {hashlib.sha256(source.encode()).hexdigest()[:12]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    # Our own statements: a config's values reach them only as the values of `env`'s names.
    exec(compile(source, filename, "exec"), env)  # noqa: S102
    run: SensorPass = env["sensor_pass"]
    return run


def _failed(states: dict[str, Any], rule_id: str, reading: Reading) -> None:
    # One rule that cannot take this reading must not mute the sensor for good: its state
    # starts again, and the sensor's other rules still see the reading.
    log.exception("rule %s failed on %s/%s; its state starts again",
                  rule_id, reading.site, reading.sensor)  # fmt: skip
    states.pop(rule_id, None)


def _faulty(reading: Reading) -> Reading:
    return reading.model_copy(update={"quality": "fault", "fault": "implausible"})


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
    other rules as a fault reading. Each kind's part writes out its quiet case (nothing
    crosses, nothing raised) and hands every other case to the kind's own `evaluate`.
    """
    run = rules.sensor_pass if rules.__class__ is Rules else _plan(rules)
    return states, run(states, reading, now, late_after)
