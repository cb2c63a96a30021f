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
    Inline,
    Peek,
    RuleBase,
    RuleKind,
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


#: The quiet case — no episode — moves the last good time forward in place.
_INLINE = """\
if good:
    P_state = states.get(P_id)
    if P_state.__class__ is P_State and P_state.episode is None:
        if P_state.last_good is None or ts > P_state.last_good:
            P_state.last_good = ts
    else:
        P_offline = P_state if isinstance(P_state, P_State) else P_State()
        P_offline, P_out = P_evaluate(P_offline, reading, P_rule, now, late_after)
        states[P_id] = P_offline
        if P_out:
            alarms += P_out
"""


def inline(rule: OfflineRule, counter: bool) -> Inline:
    env = {"P_id": rule.id, "P_State": OfflineState, "P_rule": rule, "P_evaluate": evaluate}
    return Inline(_INLINE, env)


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
    inline=inline,
    encode=encode,
    decode=decode,
)
