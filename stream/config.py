"""The rule table: rows of data, not code. The most specific matching row per condition wins."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.config import Duration, SensorConfig
from gateway.models import Slug
from stream.matching import Facts, best_rows

__all__ = [
    "DEFAULT_RULES",
    "MATCH_ORDER",
    "RuleRow",
    "StreamConfig",
    "rule_problems",
    "sensor_facts",
]

#: Match fields from most to least specific.
MATCH_ORDER = ("sensor", "room", "building", "tag", "site", "kind")


class RuleRow(BaseModel):
    """A threshold rule: raise `condition` when the value stays beyond a level for `hold`.

    `below` (freezing) or `above` (fire) is the warning level; `critical` optionally a second,
    harsher level; `clear` the level the value must get back past before the alarm clears
    (hysteresis). `enabled: false` switches the condition off for the sensors the row matches.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Slug
    condition: Literal["freezing", "fire"]
    # what the row matches (all optional; omitted = any)
    site: Slug | None = None
    building: Slug | None = None
    room: Slug | None = None
    tag: Slug | None = None
    kind: Slug | None = "temperature"
    sensor: Slug | None = None
    # what it decides
    enabled: bool = True
    below: float | None = None
    above: float | None = None
    critical: float | None = None
    clear: float | None = None
    hold: Duration = 0.0
    auto_resolve: bool = Field(
        default=False, description="resolve the case when the condition clears (else a person does)"
    )

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

    def criteria(self) -> Mapping[str, str]:
        fields = {f: getattr(self, f) for f in MATCH_ORDER}
        return {f: v for f, v in fields.items() if v is not None}

    @property
    def level(self) -> float:
        """The warning level (whichever of below/above is set)."""
        level = self.below if self.below is not None else self.above
        assert level is not None, "validated: exactly one of below/above"
        return level


class StreamConfig(BaseModel):
    """Settings of the rule engine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    late_after: Duration = Field(default=300.0, description="readings older than this are 'late'")


def sensor_facts(site: str, sensor: str, kind: str, config: SensorConfig | None) -> Facts:
    """What rule and routing rows can match on, for one sensor."""
    return {
        "site": site,
        "sensor": sensor,
        "kind": kind,
        "building": config.building if config else None,
        "room": config.room if config else None,
        "tag": frozenset(config.tags) if config else frozenset(),
    }


def rule_problems(
    rules: Sequence[RuleRow], sensors: Sequence[tuple[str, SensorConfig]]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Duplicate ids, and rows tied for most specific for some configured sensor."""
    seen: dict[str, int] = {}
    for i, row in enumerate(rules):
        if row.id in seen:
            yield ("rules", i, "id"), f"rule id {row.id!r} is already used by rules[{seen[row.id]}]"
        seen.setdefault(row.id, i)
    index = {id(row): i for i, row in enumerate(rules)}
    reported: set[tuple[int, ...]] = set()
    for site, sensor in sensors:
        facts = sensor_facts(site, sensor.id, sensor.kind, sensor)
        for condition in ("freezing", "fire"):
            tied = best_rows((r for r in rules if r.condition == condition), facts, MATCH_ORDER)
            if len(tied) > 1:
                rows = tuple(index[id(r)] for r in tied)
                if rows in reported:
                    continue
                reported.add(rows)
                names = ", ".join(f"rules[{i}] ({rules[i].id})" for i in rows)
                yield (
                    ("rules", rows[-1]),
                    f"ambiguous: {names} are equally specific for sensor {sensor.id!r} "
                    f"({condition}); make one more specific or remove one",
                )


#: Used when a config has no `rules:` table. Levels from REFERENCE.md: frost protection engages
#: below 5 °C (held 10 min to ride out a door left open), pipes at real risk at 2 °C, clear at
#: 7 °C; EN 54-5 A1 heat detectors tolerate 50 °C ambient, so above 50 °C is abnormal heat, and
#: NFPA 72's "ordinary" fixed-temperature class starts at 57 °C.
DEFAULT_RULES: tuple[RuleRow, ...] = (
    RuleRow(id="freezing", condition="freezing", below=5.0, critical=2.0, clear=7.0, hold=600.0),
    RuleRow(id="fire", condition="fire", above=50.0, critical=57.0, clear=45.0, hold=0.0),
)
