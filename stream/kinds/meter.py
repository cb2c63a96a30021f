"""The meter kind: counters (energy, water, district heat) read as consumption.

A meter's reading is its counter. Consumption is the counter's increase, with the counter's
wrap (`rollover`) and resets handled so that no reading invents consumption: a drop that is
not a wrap is a reset (the meter replaced, a device restarted) or a glitch (one bad reading),
and counts nothing until the readings after it say which — back at or above the old value, it
was a glitch and only the increase past the old value counts; rising from the low value, it was
a reset and the increase from there counts. A step between two readings is shared among the
periods it spans in proportion to time.

Each row watches one thing (`meter:`), in the site's local time:

- `consumption`: more than `above` consumed within one `interval` (aligned to local midnight);
- `night_flow`: more than `above` consumed within the nightly `hours` (a running tap or a
  burst pipe at 03:00);
- `spike`: a day's consumption above `factor` × the median of the last `days` days (once
  `min_days` of them are known);
- `stopped`: the counter has not moved for `after` while readings keep coming.

The first three raise as soon as the period's consumption passes the level, and clear at the
end of a later period that stayed at or below `clear` (default: half the level) — the
hysteresis; `stopped` clears when the counter moves again.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from gateway.config import Duration, ModbusPoint, SensorConfig
from gateway.config import format_duration as _duration
from gateway.decode import counter_wrap
from gateway.models import Reading, Slug
from stream.kinds.base import (
    DECIDED_BY,
    SYSTEM,
    Episode,
    Peek,
    RuleKind,
    StepFn,
    TitledRule,
    dec_episode,
    enc_episode,
    episode_id,
    from_micros,
    is_late,
    make_alarm,
    micros,
)
from stream.models import Alarm, AlarmState

__all__ = ["KIND", "Counter", "MeterRule", "MeterState", "daily_consumption", "evaluate"]

Check = Literal["consumption", "night_flow", "spike", "stopped"]

#: The times a meter reading may have (µs since the epoch): 1970 … 9000.
_EARLIEST, _LATEST = 0, micros(datetime(9000, 1, 1, tzinfo=UTC))

#: A step between two readings is shared among at most this many periods; a longer gap's
#: middle periods are skipped (closed empty), so a meter silent for a year costs no more.
MAX_PERIODS = 400


class MeterRule(TitledRule):
    """Watch a counter (a meter's reading): see the module's description for `meter:`."""

    condition: Slug
    kind: Slug  # required: a meter row names its meters' kind (water, energy, heat)
    meter: Check
    above: float | None = Field(default=None, gt=0, description="consumption in the period")
    clear: float | None = Field(default=None, ge=0, description="default: half of above")
    interval: Duration = Field(default=3600.0, description="consumption: the period")
    hours: str = Field(default="00:00-05:00", description="night_flow: local HH:MM-HH:MM")
    factor: float = Field(default=3.0, gt=1, description="spike: times the median day")
    days: int = Field(default=14, ge=3, le=366, description="spike: the days of the median")
    min_days: int = Field(default=7, ge=2, description="spike: days known before it judges")
    after: Duration = Field(default=86400.0, description="stopped: the counter unmoved for")
    rollover: float | None = Field(
        default=None, gt=0, description="the value the counter wraps at (uint32: 4294967296)"
    )
    timezone: str | None = Field(default=None, description="default: the site's")

    @field_validator("condition")
    @classmethod
    def _a_condition_of_its_own(cls, value: str) -> str:
        if value in DECIDED_BY or value in SYSTEM:
            raise ValueError(f"{value!r} is a built-in condition, not a meter's")
        return value

    @field_validator("timezone")
    @classmethod
    def _a_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        _window(value)
        return value

    @model_validator(mode="after")
    def _levels(self) -> Self:
        if self.meter in ("consumption", "night_flow") and self.above is None:
            raise ValueError(f"a {self.meter} row needs 'above', the consumption that raises it")
        if self.meter not in ("consumption", "night_flow") and self.above is not None:
            raise ValueError(f"a {self.meter} row takes no 'above'")
        if self.above is not None and self.clear is not None and self.clear >= self.above:
            raise ValueError(f"'clear' ({self.clear}) must be below 'above' ({self.above})")
        if self.meter == "spike" and self.min_days > self.days:
            raise ValueError(f"'min_days' ({self.min_days}) must not exceed 'days' ({self.days})")
        if self.interval < 60 or self.interval > 86400:
            raise ValueError("'interval' must be between 1 minute and 1 day")
        if self.after <= 0:
            raise ValueError("'after' must be longer than 0 s")
        return self

    def decides(self) -> list[str]:
        own = {
            "consumption": ["above", "clear", "interval"],
            "night_flow": ["above", "clear", "hours"],
            "spike": ["factor", "days", "min_days"],
            "stopped": ["after"],
        }
        return ["meter", *own[self.meter], "rollover", "timezone"]

    def bound(
        self, timezone: str, sensor: SensorConfig | None, peek: Peek | None = None
    ) -> Self | None:
        update: dict[str, object] = {}
        if self.timezone is None:
            update["timezone"] = timezone
        point = sensor.source if sensor is not None else None
        if self.rollover is None and isinstance(point, ModbusPoint):
            wrap = point.rollover or counter_wrap(point.data_type)
            if wrap is not None:
                update["rollover"] = wrap * abs(sensor.scale) if sensor is not None else wrap
        return self.model_copy(update=update) if update else self

    @property
    def clear_level(self) -> float:
        assert self.above is not None
        return self.clear if self.clear is not None else self.above / 2


def _window(hours: str) -> tuple[time, time]:
    try:
        start, end = (time.fromisoformat(part.strip()) for part in hours.split("-"))
    except ValueError as exc:
        raise ValueError(f"hours {hours!r}: give them as HH:MM-HH:MM (22:00-05:00)") from exc
    if start == end:
        raise ValueError(f"hours {hours!r}: an empty window")
    return start, end


@lru_cache(maxsize=256)
def _zone(name: str | None) -> ZoneInfo:
    return ZoneInfo(name or "UTC")


@dataclass(slots=True)
class Counter:
    """A counter's last value, and the value before a drop not yet explained (`high`)."""

    last: float | None = None
    high: float | None = None

    def step(self, value: float, rollover: float | None = None) -> float:
        """The consumption since the last value: never more than the meter counted."""
        last, high = self.last, self.high
        self.last = value
        if last is None:
            return 0.0
        if high is not None:
            if value >= high:  # back where it was: the drop was a glitch
                self.high = None
                return value - high
            if value > last:  # rising from the low value: a reset, counting again
                self.high = None
                return value - last
            return 0.0
        if value >= last:
            return value - last
        if rollover is not None and last >= 0.9 * rollover and value < 0.1 * rollover:
            return rollover - last + value  # wrapped
        self.high = last
        return 0.0


@dataclass(slots=True)
class MeterState:
    """Mutable. `period`: the start (µs) of the period being counted, `used` its consumption;
    `days`: the last completed days' consumption (spike); `moved`: when the counter last
    moved (stopped)."""

    counter: Counter = field(default_factory=Counter)
    at: int | None = None
    period: int | None = None
    used: float = 0.0
    days: list[float] = field(default_factory=list)
    moved: int | None = None
    episode: Episode | None = None


def _local(at: date, clock: time, zone: ZoneInfo) -> int:
    return micros(datetime.combine(at, clock, tzinfo=zone))


def _bounds(rule: MeterRule, us: int) -> tuple[int, int, bool]:
    """The period containing `us`: its start and end (µs) and whether it is watched (a
    night_flow row watches its windows, not the day between)."""
    zone = _zone(rule.timezone)
    local = from_micros(us).astimezone(zone)
    today = local.date()
    midnight = _local(today, time(), zone)
    tomorrow = _local(today + timedelta(days=1), time(), zone)
    if rule.meter == "night_flow":
        opens, closes = _window(rule.hours)
        edges: list[tuple[int, bool]] = []
        for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
            close_day = day if closes > opens else day + timedelta(days=1)
            edges.append((_local(day, opens, zone), True))
            edges.append((_local(close_day, closes, zone), False))
        edges.sort()
        for (a, watched), (b, _) in pairwise(edges):
            if a <= us < b:
                return a, b, watched
        return us, us + 1, False  # unreachable: the edges span the day and more
    if rule.meter == "consumption":
        step = int(rule.interval * 1_000_000)
        start = midnight + (us - midnight) // step * step
        return start, min(start + step, tomorrow), True
    return midnight, tomorrow, True


def _level(rule: MeterRule, state: MeterState) -> float | None:
    """The consumption above which the current period raises (None: not judged yet)."""
    if rule.meter == "spike":
        if len(state.days) < rule.min_days:
            return None
        return rule.factor * statistics.median(state.days[-rule.days :])
    return rule.above


def _clear_level(rule: MeterRule, state: MeterState) -> float | None:
    if rule.meter == "spike":
        return _level(rule, state)
    return rule.clear_level


def evaluate(
    state: MeterState, reading: Reading, rule: MeterRule, now: datetime, late_after: float
) -> tuple[MeterState, list[Alarm]]:
    if reading.quality != "good":
        return state, []
    us, value = micros(reading.ts), reading.value
    if not _EARLIEST <= us <= _LATEST:
        return state, []  # no meter counts then: local days there do not even exist
    alarms: list[Alarm] = []

    def alarm(episode: Episode, what: AlarmState, amount: float, threshold: float) -> None:
        alarms.append(
            make_alarm(
                rule,
                rule.condition,
                episode,
                what,
                site=reading.site,
                sensor=reading.sensor,
                value=round(amount, 3),
                threshold=round(threshold, 3),
                ts=reading.ts,
                late=is_late(reading, now, late_after),
            )
        )

    delta = state.counter.step(value, rule.rollover)
    before, state.at = state.at, us
    if rule.meter == "stopped":
        if before is None or delta > 0 or state.moved is None:
            state.moved = us
            if state.episode is not None and delta > 0:
                alarm(state.episode, "cleared", 0.0, rule.after)
                state.episode = None
            return state, alarms
        still = (us - state.moved) / 1e6
        if state.episode is None and still >= rule.after:
            since = from_micros(state.moved)
            reason = f"the counter has stood at {value:g} for {_duration(still)}"
            state.episode = Episode(
                episode_id(rule, reading.site, reading.sensor, since), since, "warning", reason
            )
            alarm(state.episode, "raised", round(still, 1), rule.after)
        return state, alarms

    if before is None or us <= before:
        if state.period is None:
            state.period = _bounds(rule, us)[0]
        state.used += delta
        _judge(state, rule, reading, alarm)
        return state, alarms
    _spread(state, rule, before, us, delta, reading, alarm)
    return state, alarms


def _spread(  # noqa: PLR0917 - the step and where it goes
    state: MeterState,
    rule: MeterRule,
    t0: int,
    t1: int,
    delta: float,
    reading: Reading,
    alarm: Any,
) -> None:
    """Share `delta`, consumed between `t0` and `t1`, among the periods it spans, closing
    each period the step leaves behind."""
    a, span, walked = t0, t1 - t0, 0
    while True:
        start, end, _ = _bounds(rule, a)
        if state.period != start:
            state.period, state.used = start, 0.0
        state.used += delta * (min(end, t1) - a) / span
        _judge(state, rule, reading, alarm)
        if end > t1:
            return
        _close(state, rule, reading, alarm)
        a, walked = end, walked + 1
        if a == t1:
            state.period, state.used = _bounds(rule, t1)[0], 0.0
            return
        if walked >= MAX_PERIODS:  # a long silence: its middle periods pass uncounted
            a = max(a, _bounds(rule, t1)[0])


def _judge(state: MeterState, rule: MeterRule, reading: Reading, alarm: Any) -> None:
    """Raise when the period being counted has passed its level."""
    if state.episode is not None or state.period is None:
        return
    if not _bounds(rule, state.period)[2]:
        return
    level = _level(rule, state)
    if level is None or state.used <= level:
        return
    since = from_micros(state.period)
    what = {"consumption": "in one interval", "night_flow": "in the night", "spike": "today"}
    reason = f"{state.used:g} {reading.unit} consumed {what[rule.meter]} (above {level:g})"
    if rule.meter == "spike":
        median = statistics.median(state.days[-rule.days :])
        reason += f", {rule.factor:g} × the median day of {median:g}"
    state.episode = Episode(
        episode_id(rule, reading.site, reading.sensor, since), since, "warning", reason
    )
    alarm(state.episode, "raised", state.used, level)


def _close(state: MeterState, rule: MeterRule, reading: Reading, alarm: Any) -> None:
    """The period being counted has ended: a raised condition clears when it stayed low."""
    assert state.period is not None
    watched = _bounds(rule, state.period)[2]
    if not watched:
        return
    clear = _clear_level(rule, state)
    if rule.meter == "spike":
        state.days = [*state.days, state.used][-rule.days :]
    if state.episode is not None and clear is not None and state.used <= clear:
        alarm(state.episode, "cleared", state.used, clear)
        state.episode = None


def step(rule: MeterRule, counter: bool) -> StepFn:
    rule_id = rule.id

    def run(
        states: dict[str, Any], reading: Reading, good: bool, now: datetime, late_after: float
    ) -> list[Alarm] | None:
        if not good:
            return None
        state = states.get(rule_id)
        if state.__class__ is not MeterState:
            state = states[rule_id] = MeterState()
        _, produced = evaluate(state, reading, rule, now, late_after)
        return produced or None

    return run


def encode(s: MeterState, samples: bool) -> dict[str, Any]:
    return {
        "t": "meter",
        "last": s.counter.last,
        "high": s.counter.high,
        "at": s.at,
        "period": s.period,
        "used": s.used,
        "days": list(s.days),
        "moved": s.moved,
        "episode": enc_episode(s.episode),
    }


def decode(d: dict[str, Any]) -> MeterState:
    return MeterState(
        counter=Counter(d["last"], d["high"]),
        at=d["at"],
        period=d["period"],
        used=float(d["used"]),
        days=[float(x) for x in d["days"]][-366:],
        moved=d["moved"],
        episode=dec_episode(d["episode"]),
    )


def daily_consumption(
    points: Iterable[tuple[datetime, float]],
    *,
    timezone: str = "UTC",
    rollover: float | None = None,
) -> dict[date, float]:
    """A counter's consumption per local day, from its readings (oldest first): the same
    counting, and the same sharing of a step among the days it spans, as a spike row's."""
    rule = MeterRule(
        id="daily", condition="daily", kind="meter", meter="spike", rollover=rollover,
        timezone=timezone,
    )  # fmt: skip
    zone = _zone(timezone)
    counter, days = Counter(), dict[date, float]()
    before: int | None = None
    for ts, value in points:
        us = micros(ts)
        delta = counter.step(value, rollover)
        if before is not None and us > before:
            a = before
            while a < us:
                start, end, _ = _bounds(rule, a)
                b = min(end, us)
                day = from_micros(start).astimezone(zone).date()
                days[day] = days.get(day, 0.0) + delta * (b - a) / (us - before)
                a = b
        elif delta:
            day = ts.astimezone(zone).date()
            days[day] = days.get(day, 0.0) + delta
        before = us if before is None else max(before, us)
    return days


KIND = RuleKind(
    name="meter",
    row=MeterRule,
    keys=("meter",),
    state=MeterState,
    tag="meter",
    initial=MeterState,
    evaluate=evaluate,
    step=step,
    encode=encode,
    decode=decode,
    counter=True,
)
