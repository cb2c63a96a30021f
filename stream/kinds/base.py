"""What every rule kind shares: the row's common fields, an episode, the alarm it makes, exact
time, and `RuleKind` — the description a kind's module registers.

A kind's module holds everything about it: its row model, its per-sensor state, how one reading
moves that state (`evaluate`, and `inline` or `step`, the same decision with its quiet case
written out for the hot path), how its state is saved and read back, its default rows and the
built-in conditions it decides with their titles. `stream.kinds` lists the kinds; nothing else
names them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

from pydantic import Field, field_validator

from gateway.models import Frozen, Reading, Slug
from stream.models import Alarm, AlarmState, Condition, Severity

if TYPE_CHECKING:
    from gateway.config import SensorConfig

__all__ = [
    "DECIDED_BY",
    "MATCH_ORDER",
    "MAX_TITLE",
    "SYSTEM",
    "Episode",
    "Inline",
    "Peek",
    "RuleBase",
    "RuleKind",
    "StepFn",
    "TitledRule",
    "below_micros",
    "dec_episode",
    "enc_episode",
    "episode_id",
    "from_micros",
    "is_late",
    "is_threshold",
    "make_alarm",
    "micros",
    "opt_micros",
    "opt_time",
    "within_micros",
]

#: Match fields from most to least specific.
MATCH_ORDER = ("sensor", "gateway", "room", "building", "tag", "site", "kind")

#: How long a condition's title may be, in any language.
MAX_TITLE = 80

#: Conditions the engine raises about itself, not from a rule row.
SYSTEM = ("gateway_clock", "stream_lag")

#: The built-in conditions and the kind deciding each (filled as `stream.kinds` registers
#: them); any other condition a row names is a threshold's, or its rate's when it has one.
DECIDED_BY: dict[str, str] = {}


def is_threshold(condition: str) -> bool:
    """Whether a `condition`'s alarms are a value past a level (a threshold row's)."""
    return DECIDED_BY.get(condition, "threshold") in ("threshold", "state") and (
        condition not in SYSTEM
    )


class RuleBase(Frozen):
    """What every row has: an id, what it matches (omitted = any), and whether it is on."""

    id: Slug
    site: Slug | None = None
    building: Slug | None = None
    room: Slug | None = None
    tag: Slug | None = None
    kind: Slug | None = "temperature"
    sensor: Slug | None = None
    enabled: bool = True
    auto_resolve: bool = Field(
        default=False, description="resolve the case when the condition clears (else a person does)"
    )

    def criteria(self) -> Mapping[str, str]:
        fields = {f: getattr(self, f, None) for f in MATCH_ORDER}
        return {f: v for f, v in fields.items() if v is not None}

    def decides(self) -> list[str]:
        """The fields that say what the row decides (its levels and times), for a person."""
        skip = {"id", "condition", "enabled", "auto_resolve", "title", *MATCH_ORDER}
        return [f for f in type(self).model_fields if f not in skip]

    def bound(
        self, timezone: str, sensor: SensorConfig | None, peek: Peek | None = None
    ) -> Self | None:
        """The row as it applies to `sensor` at a site of `timezone` (a meter row reads local
        time in the site's zone, and a Modbus counter's wrap from its point, unless it names
        its own; a row with `when` looks up its other sensor's latest value with `peek`);
        None: it does not apply to that sensor (an offline row to a meter read by hand)."""
        return self


class TitledRule(RuleBase):
    """A row that may decide a condition of a site's own, with what it is called."""

    title: dict[Slug, str] | None = Field(
        default=None, description="what the condition is called, per language (en, sv)"
    )

    @field_validator("title")
    @classmethod
    def _titles_are_short_text(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for language, text in (value or {}).items():
            if not text.strip() or len(text) > MAX_TITLE or not text.isprintable():
                raise ValueError(
                    f"the {language} title must be printable text of 1–{MAX_TITLE} characters"
                )
        return value


@dataclass(frozen=True, slots=True)
class Episode:
    """One raise→clear episode: its stable id, when the condition began, how bad it is."""

    id: str
    since: datetime
    severity: Severity
    reason: str | None = None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(ts: datetime) -> int:
    """µs since the epoch, exactly: how rate of rise and stored states keep time."""
    d = ts - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def from_micros(us: int) -> datetime:
    """The UTC time `us` µs after the epoch (the inverse of `micros`)."""
    return _EPOCH + timedelta(microseconds=us)


def within_micros(seconds: float) -> int:
    """The largest whole µs `d` with `d / 1e6 <= seconds`: a sample `d` µs older than the
    newest has left a window of `seconds` exactly when `d` is above it (as `push` decides)."""
    d = int(seconds * 1e6)
    while d / 1e6 > seconds:
        d -= 1
    while (d + 1) / 1e6 <= seconds:
        d += 1
    return d


def below_micros(seconds: float) -> int:
    """The largest whole µs `d` with `d / 1e6 < seconds`: a span of `d` µs is short of
    `seconds` exactly when `d` is at most this."""
    d = within_micros(seconds)
    return d - 1 if d / 1e6 == seconds else d


def opt_micros(value: datetime | None) -> int | None:
    return None if value is None else micros(value)


def opt_time(value: int | None) -> datetime | None:
    return None if value is None else from_micros(value)


def enc_episode(e: Episode | None) -> list[Any] | None:
    return None if e is None else [e.id, micros(e.since), e.severity, e.reason]


def dec_episode(e: list[Any] | None) -> Episode | None:
    return None if e is None else Episode(e[0], from_micros(e[1]), e[2], e[3])


def episode_id(rule: RuleBase, site: str, sensor: str, since: datetime) -> str:
    return f"{rule.id}:{site}:{sensor}:{since.strftime('%Y%m%dT%H%M%SZ')}"


def is_late(reading: Reading, now: datetime, late_after: float) -> bool:
    return (now - reading.ts).total_seconds() > late_after


def make_alarm(
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


#: The latest good value of a sensor of the same site, by its id (None: none known).
Peek = Callable[[str], float | None]

#: One rule's part of a sensor's pass: `(states by rule id, reading, whether it is good, now,
#: late_after) -> its alarms (None: none)`; it updates `states` in place.
StepFn = Callable[[dict[str, Any], Reading, bool, datetime, float], list[Alarm] | None]


@dataclass(frozen=True, slots=True)
class Inline:
    """One rule's part of a sensor's pass as Python statements, which `stream.rules` compiles
    with the sensor's other rules into one function (a call per rule and reading cost as much
    as the work of a quiet reading). The statements read `states`, `reading`, `good`, `value`
    (the reading's), `ts` (its time), `now` and `late_after`, add what they raise to the list
    `alarms`, and name everything else of theirs `P_…`: the compiler gives each rule its own
    prefix. `env` holds the values those names stand for — the rule's levels, its state class,
    its `evaluate` — so no text of a config ever becomes source."""

    source: str
    env: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class RuleKind:
    """One kind of rule row, as its module registers it.

    `keys`: a row holding any of these fields is of this kind whatever its condition (`state`,
    `rate`, `meter`); `conditions`: the built-in conditions it decides by name alone, with
    their titles per language; `defaults`: the rows a table gets for those conditions when it
    does not mention them. A kind with per-sensor state gives `state` (its class), `tag` (its
    name in a saved state), `initial`, `evaluate`, `inline` (`rule, counter -> Inline`) or `step`
    (`rule, counter -> StepFn`; `counter`: the sensor is a meter's counter, which stands still
    for hours and steps), `encode` and `decode`. `screens`: it runs first, and a reading it
    rejects (its state's `rejected`) reaches the other rules as a fault reading. `counter`: its
    sensors are counters.
    """

    name: str
    row: type[RuleBase]
    keys: tuple[str, ...] = ()
    conditions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    defaults: tuple[RuleBase, ...] = ()
    state: type | None = None
    tag: str = ""
    initial: Callable[[], Any] | None = None
    evaluate: Callable[[Any, Reading, Any, datetime, float], tuple[Any, list[Alarm]]] | None = None
    step: Callable[[Any, bool], StepFn] | None = None
    inline: Callable[[Any, bool], Inline] | None = None
    encode: Callable[[Any, bool], dict[str, Any]] | None = None
    decode: Callable[[dict[str, Any]], Any] | None = None
    screens: bool = False
    counter: bool = False
