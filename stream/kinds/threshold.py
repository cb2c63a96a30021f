"""The threshold kind: a value past a level for `hold`, with hysteresis and flapping
protection. `freezing` and `fire` are its presets; any condition a site names on any kind of
sensor (`damp`, `co2_high`) is one too."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import Field, PrivateAttr, field_validator, model_validator

from gateway.config import Duration, SensorConfig
from gateway.config import format_duration as _duration
from gateway.models import Frozen, Reading, Slug
from stream.kinds.base import (
    Episode,
    Inline,
    Peek,
    RuleKind,
    TitledRule,
    dec_episode,
    enc_episode,
    episode_id,
    from_micros,
    is_late,
    is_threshold,
    make_alarm,
    micros,
    opt_micros,
    opt_time,
)
from stream.models import SEVERITY_RANK, Alarm, AlarmState, Severity

__all__ = ["KIND", "Gate", "ThresholdRule", "ThresholdState", "evaluate"]


class Gate(Frozen):
    """Another sensor of the same site that must be past a level too: `{sensor: outdoor-t1,
    below: 0}` — a door open for half an hour matters while it is freezing outside."""

    sensor: Slug
    below: float | None = None
    above: float | None = None

    @model_validator(mode="after")
    def _one_level(self) -> Self:
        if (self.below is None) == (self.above is None):
            raise ValueError("give the other sensor exactly one of 'below' or 'above'")
        return self

    def __str__(self) -> str:
        if self.below is not None:
            return f"{self.sensor} at or below {self.below:g}"
        return f"{self.sensor} above {self.above:g}"

    def open(self, value: float | None) -> bool:
        """Whether the condition may raise: the other sensor is past its level — or nothing
        is known of it (a sensor not heard from since a restart, or read by another worker):
        a false alarm is better than a missed one."""
        if value is None:
            return True
        return value <= self.below if self.below is not None else value > (self.above or 0.0)


class ThresholdRule(TitledRule):
    """Raise `condition` when the value stays beyond a level for `hold`.

    `below` (freezing) or `above` (fire) is the warning level; `critical` optionally a second,
    harsher level; `clear` the level the value must get back past before the alarm clears
    (hysteresis). A sensor that raises and clears `flap_count` times within `flap_window` is
    flapping: its alarm then stays raised until the value has stayed past `clear` for `stable`.
    """

    condition: Slug
    below: float | None = None
    above: float | None = None
    critical: float | None = None
    clear: float | None = None
    hold: Duration = 0.0
    flap_count: int = Field(default=4, ge=0, description="raise/clear transitions; 0 = off")
    flap_window: Duration = 3600.0
    stable: Duration = 1800.0
    when: Gate | None = Field(
        default=None,
        description="raise only while another sensor of the site is past a level too",
    )
    _peek: Peek | None = PrivateAttr(default=None)

    @field_validator("condition")
    @classmethod
    def _a_threshold_condition(cls, value: str) -> str:
        if not is_threshold(value):
            raise ValueError(f"{value!r} is not a threshold condition")
        return value

    @model_validator(mode="after")
    def _levels_are_consistent(self) -> Self:
        if not self.enabled:
            return self
        if (self.below is None) == (self.above is None):
            raise ValueError("give exactly one of 'below' or 'above'")
        if self.clear is None:
            raise ValueError("give 'clear', the level at which the alarm clears (hysteresis)")
        if self.below is not None:
            if self.clear <= self.below:
                raise ValueError(f"'clear' ({self.clear}) must be above 'below' ({self.below})")
            if self.critical is not None and self.critical > self.below:
                raise ValueError(
                    f"'critical' ({self.critical}) must not be above 'below' ({self.below})"
                )
        if self.above is not None:
            if self.clear >= self.above:
                raise ValueError(f"'clear' ({self.clear}) must be below 'above' ({self.above})")
            if self.critical is not None and self.critical < self.above:
                raise ValueError(
                    f"'critical' ({self.critical}) must not be below 'above' ({self.above})"
                )
        return self

    @property
    def level(self) -> float:
        """The warning level (whichever of below/above is set)."""
        level = self.below if self.below is not None else self.above
        assert level is not None, "validated: exactly one of below/above"
        return level

    def bound(
        self, timezone: str, sensor: SensorConfig | None, peek: Peek | None = None
    ) -> Self | None:
        if self.when is None or peek is None:
            return self
        row = self.model_copy()
        row._peek = peek
        return row

    def gate_open(self) -> bool:
        """Whether `when` lets the condition raise now (no `when`: always)."""
        when = self.when
        if when is None:
            return True
        return when.open(self._peek(when.sensor) if self._peek is not None else None)


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


def evaluate(
    state: ThresholdState, reading: Reading, rule: ThresholdRule, now: datetime, late_after: float
) -> tuple[ThresholdState, list[Alarm]]:
    value, ts = reading.value, reading.ts
    assert rule.clear is not None, "validated: enabled rules have a clear level"

    def alarm(new: ThresholdState, what: AlarmState, threshold: float) -> Alarm:
        assert new.episode is not None, "only raised states alarm"
        return make_alarm(
            rule,
            rule.condition,
            new.episode,
            what,
            site=reading.site,
            sensor=reading.sensor,
            value=value,
            threshold=threshold,
            ts=ts,
            late=is_late(reading, now, late_after),
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

    if not _beyond(value, rule.level, rule) or not rule.gate_open():
        # idle, or a pending crossing that did not last (or that `when` no longer allows)
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


_IDLE = ThresholdState()


#: The quiet case — idle, and the value not past the level — costs a lookup and a comparison;
#: an idle state is not kept (missing means idle).
_INLINE = """\
if good:
    P_state = states.get(P_id)
    if (P_state is not None and P_state.phase != "idle") or P_BEYOND:
        P_current = P_state if P_state is not None else P_idle
        P_new, P_out = P_evaluate(P_current, reading, P_rule, now, late_after)
        if P_new is not P_current:
            states[P_id] = P_new
        if P_out:
            alarms += P_out
"""


def inline(rule: ThresholdRule, counter: bool) -> Inline:
    beyond = "value <= P_level" if rule.below is not None else "value > P_level"
    env = {
        "P_id": rule.id,
        "P_level": rule.level,
        "P_idle": _IDLE,
        "P_rule": rule,
        "P_evaluate": evaluate,
    }
    return Inline(_INLINE.replace("P_BEYOND", beyond), env)


def encode(s: ThresholdState, samples: bool) -> dict[str, Any]:
    return {
        "t": "threshold",
        "phase": s.phase,
        "since": opt_micros(s.since),
        "episode": enc_episode(s.episode),
        "transitions": [micros(x) for x in s.transitions],
        "flapping": s.flapping,
        "back_since": opt_micros(s.back_since),
    }


def decode(d: dict[str, Any]) -> ThresholdState:
    return ThresholdState(
        phase=d["phase"],
        since=opt_time(d["since"]),
        episode=dec_episode(d["episode"]),
        transitions=tuple(from_micros(x) for x in d["transitions"]),
        flapping=d["flapping"],
        back_since=opt_time(d["back_since"]),
    )


#: Levels from REFERENCE.md: frost protection engages below 5 °C (held 10 min to ride out a door
#: left open), pipes at real risk at 2 °C, clear at 7 °C; EN 54-5 A1 heat detectors tolerate
#: 50 °C ambient, so above 50 °C is abnormal heat, and NFPA 72's "ordinary" fixed-temperature
#: class starts at 57 °C.
KIND = RuleKind(
    name="threshold",
    row=ThresholdRule,
    conditions={
        "freezing": {"en": "Freezing risk", "sv": "Frysrisk"},
        "fire": {"en": "Abnormal heat (fire risk)", "sv": "Onormal värme (brandrisk)"},
    },
    defaults=(
        ThresholdRule(
            id="freezing", condition="freezing", below=5.0, critical=2.0, clear=7.0, hold=600.0
        ),
        ThresholdRule(id="fire", condition="fire", above=50.0, critical=57.0, clear=45.0),
    ),
    state=ThresholdState,
    tag="threshold",
    initial=ThresholdState,
    evaluate=evaluate,
    inline=inline,
    encode=encode,
    decode=decode,
)
