"""The fault kind: `sensor_fault` on fault readings in a row, a value stuck for hours, or an
impossible jump. It screens: it runs before the sensor's other rules, and a reading it rejects
(stuck, jumped) reaches them as a fault reading, so a broken sensor never raises freezing or
fire. A meter's counter and an on/off sensor hold a value for hours and step by design: on a
sensor a meter rule watches, or of unit `bool`, only the fault readings count."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from gateway.config import Duration
from gateway.config import format_duration as _duration
from gateway.models import Reading, Slug
from stream.kinds.base import (
    Episode,
    Inline,
    RuleBase,
    RuleKind,
    dec_episode,
    enc_episode,
    episode_id,
    from_micros,
    is_late,
    make_alarm,
    micros,
    opt_micros,
    opt_time,
)
from stream.models import Alarm

__all__ = ["KIND", "FaultRule", "FaultState", "evaluate", "holding_still"]


class FaultRule(RuleBase):
    """Raise `sensor_fault` on `faults` fault readings in a row, a value unchanged (within
    `stuck_tolerance`) for `stuck`, or a jump of more than `jump` °C within `jump_within`.
    Readings that are stuck or jumped are then treated as fault readings by every other rule,
    so a broken sensor never raises freezing or fire. Clears after `clear_after` good readings.
    """

    condition: Literal["sensor_fault"]
    kind: Slug | None = None
    faults: int = Field(default=3, ge=0, description="fault readings in a row; 0 = off")
    stuck: Duration | None = Field(default=21600.0, description="null = off")
    stuck_tolerance: float = Field(default=0.0, ge=0)
    jump: float | None = Field(default=30.0, gt=0, description="°C; null = off")
    jump_within: Duration = 60.0
    clear_after: int = Field(default=3, ge=1)


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


def evaluate(
    state: FaultState, reading: Reading, rule: FaultRule, now: datetime, late_after: float
) -> tuple[FaultState, list[Alarm]]:
    ts, value = reading.ts, reading.value

    def raise_(new: FaultState, reason: str, threshold: float) -> tuple[FaultState, list[Alarm]]:
        if new.episode is not None:
            return new, []
        episode = Episode(episode_id(rule, reading.site, reading.sensor, ts), ts, "warning", reason)
        raised = replace(new, episode=episode)
        return raised, [
            make_alarm(
                rule,
                "sensor_fault",
                episode,
                "raised",
                site=reading.site,
                sensor=reading.sensor,
                value=value,
                threshold=threshold,
                ts=ts,
                late=is_late(reading, now, late_after),
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
        cleared = make_alarm(
            rule,
            "sensor_fault",
            state.episode,
            "cleared",
            site=reading.site,
            sensor=reading.sensor,
            value=value,
            threshold=float(rule.clear_after),
            ts=ts,
            late=is_late(reading, now, late_after),
        )
        return replace(good, episode=None), [cleared]
    return good, []


def holding_still(rule: FaultRule) -> FaultRule:
    """The row for a sensor that holds a value for hours and steps by design — a meter's
    counter, an on/off sensor (a door shut all weekend): only fault readings count."""
    return rule.model_copy(update={"stuck": None, "jump": None})


#: The common case in place — a plausible reading, no jump, not stuck — updates the state
#: where it is; every other case (and an on/off sensor's every reading: it holds its state as
#: long as it likes) goes to `evaluate`.
_HEAD = """\
P_fault = states.get(P_id)
if P_fault.__class__ is not P_State:
    P_fault = P_State()
    if reading.unit != "bool":
        states[P_id] = P_fault
P_quiet = False
"""
_QUIET = """\
if good and P_fault.jumped is None and P_fault.episode is None and reading.unit != "bool":
    P_ref = P_fault.ref
    if (
        P_ref is None
        or abs(value - P_ref[1]) <= P_jump
        or (ts - P_ref[0]).total_seconds() > P_jump_within
    ):
        P_stuck_value = P_fault.stuck_value
        if P_stuck_value is None or abs(value - P_stuck_value) > P_tolerance:
            P_fault.run, P_fault.good_run, P_fault.rejected = 0, P_fault.good_run + 1, False
            P_fault.ref, P_fault.stuck_since, P_fault.stuck_value = (ts, value), ts, value
            P_quiet = True
        elif (ts - P_fault.stuck_since).total_seconds() < P_stuck:
            P_fault.run, P_fault.good_run, P_fault.rejected = 0, P_fault.good_run + 1, False
            P_fault.ref = (ts, value)
            P_quiet = True
"""
_REST = """\
if not P_quiet:
    P_fault, P_out = P_evaluate(
        P_fault, reading, P_still if reading.unit == "bool" else P_rule, now, late_after
    )
    states[P_id] = P_fault
    if P_out:
        alarms += P_out
"""


def inline(rule: FaultRule, counter: bool) -> Inline:
    still = holding_still(rule)
    if counter:
        rule = still
    env = {
        "P_id": rule.id,
        "P_State": FaultState,
        "P_rule": rule,
        "P_still": still,
        # off: a level no finite difference or time passes (the wire lets no other through)
        "P_jump": math.inf if rule.jump is None else rule.jump,
        "P_jump_within": rule.jump_within,
        "P_stuck": math.inf if rule.stuck is None else rule.stuck,
        "P_tolerance": rule.stuck_tolerance,
        "P_evaluate": evaluate,
    }
    # `stuck: 0`: every reading is stuck, none quiet
    return Inline(_HEAD + _REST if rule.stuck == 0 else _HEAD + _QUIET + _REST, env)


def encode(s: FaultState, samples: bool) -> dict[str, Any]:
    return {
        "t": "fault",
        "run": s.run,
        "good_run": s.good_run,
        "ref": None if s.ref is None else [micros(s.ref[0]), s.ref[1]],
        "stuck_since": opt_micros(s.stuck_since),
        "stuck_value": s.stuck_value,
        "rejected": s.rejected,
        "episode": enc_episode(s.episode),
        "jumped": None if s.jumped is None else [micros(s.jumped[0]), s.jumped[1]],
    }


def decode(d: dict[str, Any]) -> FaultState:
    ref, jumped = d["ref"], d.get("jumped")
    return FaultState(
        run=d["run"],
        good_run=d["good_run"],
        ref=None if ref is None else (from_micros(ref[0]), float(ref[1])),
        stuck_since=opt_time(d["stuck_since"]),
        stuck_value=d["stuck_value"],
        rejected=d["rejected"],
        episode=dec_episode(d["episode"]),
        jumped=None if jumped is None else (from_micros(jumped[0]), float(jumped[1])),
    )


KIND = RuleKind(
    name="fault",
    row=FaultRule,
    conditions={"sensor_fault": {"en": "Sensor fault", "sv": "Givarfel"}},
    defaults=(FaultRule(id="sensor-fault", condition="sensor_fault"),),
    state=FaultState,
    tag="fault",
    initial=FaultState,
    evaluate=evaluate,
    inline=inline,
    encode=encode,
    decode=decode,
    screens=True,
)
