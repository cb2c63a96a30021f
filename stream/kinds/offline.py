"""The offline kind: `sensor_offline` when a sensor has sent no good reading for `after`. Its
alarm is raised by time passing (`tick`), not by a reading; a good reading clears it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Self

from gateway.config import Duration, ManualPoint, SensorConfig
from gateway.config import format_duration as _duration
from gateway.models import Reading, Slug
from stream.kinds.base import (
    Episode,
    Peek,
    RuleBase,
    RuleKind,
    StepFn,
    dec_episode,
    enc_episode,
    episode_id,
    is_late,
    make_alarm,
    opt_micros,
    opt_time,
)
from stream.models import Alarm

__all__ = ["KIND", "OfflineRule", "OfflineState", "evaluate", "tick"]


class OfflineRule(RuleBase):
    """Raise `sensor_offline` when a sensor has sent no good reading for `after`. Held back
    while its gateway is offline or the sensor has a `sensor_fault` raised (the more precise
    diagnosis)."""

    condition: Literal["sensor_offline"]
    kind: Slug | None = None
    after: Duration = 900.0

    def bound(
        self, timezone: str, sensor: SensorConfig | None, peek: Peek | None = None
    ) -> Self | None:
        """Not for a meter read by hand: nobody reads it every few minutes."""
        if sensor is not None and isinstance(sensor.source, ManualPoint):
            return None
        return self


@dataclass(slots=True)
class OfflineState:
    """Mutable: a good reading moves `last_good` in place."""

    last_good: datetime | None = None
    episode: Episode | None = None


def evaluate(
    state: OfflineState, reading: Reading, rule: OfflineRule, now: datetime, late_after: float
) -> tuple[OfflineState, list[Alarm]]:
    if reading.quality != "good":
        return state, []
    last = reading.ts if state.last_good is None else max(state.last_good, reading.ts)
    if state.episode is None:
        state.last_good = last  # in place: the common case, a sensor that reports
        return state, []
    silent = (reading.ts - state.episode.since).total_seconds()
    cleared = make_alarm(
        rule,
        "sensor_offline",
        state.episode,
        "cleared",
        site=reading.site,
        sensor=reading.sensor,
        value=round(silent, 1),
        threshold=rule.after,
        ts=reading.ts,
        late=is_late(reading, now, late_after),
    )
    return OfflineState(last), [cleared]


def tick(
    state: OfflineState,
    rule: OfflineRule,
    now: datetime,
    *,
    site: str,
    sensor: str,
    held: bool = False,
    grace_from: datetime | None = None,
) -> tuple[OfflineState, list[Alarm]]:
    """Advance to `now` with no reading. `held`: the engine holds this sensor's offline alarm
    back (its gateway is offline, or it has a sensor fault raised); `grace_from`: silence
    before this instant does not count (the gateway just came back and its backlog may still
    be on the way)."""
    if state.episode is not None or held or state.last_good is None:
        return state, []
    since = state.last_good if grace_from is None else max(state.last_good, grace_from)
    silent = (now - since).total_seconds()
    if silent <= rule.after:
        return state, []
    start = state.last_good
    reason = f"no good reading for {_duration((now - start).total_seconds())}"
    episode = Episode(episode_id(rule, site, sensor, start), start, "warning", reason)
    raised = make_alarm(
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


def step(rule: OfflineRule, counter: bool) -> StepFn:
    rule_id = rule.id

    def run(
        states: dict[str, Any], reading: Reading, good: bool, now: datetime, late_after: float
    ) -> list[Alarm] | None:
        if not good:
            return None
        state = states.get(rule_id)
        if state.__class__ is OfflineState and state.episode is None:
            last = state.last_good
            if last is None or reading.ts > last:
                state.last_good = reading.ts
            return None
        offline = state if isinstance(state, OfflineState) else OfflineState()
        offline, produced = evaluate(offline, reading, rule, now, late_after)
        states[rule_id] = offline
        return produced

    return run


def encode(s: OfflineState, samples: bool) -> dict[str, Any]:
    return {"t": "offline", "last_good": opt_micros(s.last_good), "episode": enc_episode(s.episode)}


def decode(d: dict[str, Any]) -> OfflineState:
    return OfflineState(last_good=opt_time(d["last_good"]), episode=dec_episode(d["episode"]))


KIND = RuleKind(
    name="offline",
    row=OfflineRule,
    conditions={"sensor_offline": {"en": "Sensor offline", "sv": "Givare ur drift"}},
    defaults=(OfflineRule(id="sensor-offline", condition="sensor_offline"),),
    state=OfflineState,
    tag="offline",
    initial=OfflineState,
    evaluate=evaluate,
    step=step,
    encode=encode,
    decode=decode,
)
