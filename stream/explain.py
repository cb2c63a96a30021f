"""`husvakt rules explain`: which row applies to a sensor for each condition, and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import SensorConfig
from stream.config import MATCH_ORDER, FaultRule, RuleBase, conditions_of, sensor_facts
from stream.kinds import kind_of
from stream.kinds.fault import holding_still
from stream.matching import best_rows, matches, specificity

__all__ = ["ConditionExplanation", "explain_sensor", "settings_of"]

_MATCH_FIELDS = {"id", "condition", "enabled", *MATCH_ORDER}


@dataclass(frozen=True)
class ConditionExplanation:
    condition: str
    chosen: RuleBase | None
    rows: tuple[tuple[RuleBase, str], ...]
    #: how the chosen row applies to this sensor, where that differs from the row as written
    note: str | None = None


def settings_of(row: RuleBase) -> str:
    """What a row decides (its levels and times), as YAML-ish `key: value` pairs."""
    data = {k: getattr(row, k) for k in row.decides()}
    parts = [
        f"{k}: {v:.12g}" if isinstance(v, float) else f"{k}: {v}"
        for k, v in data.items()
        if k not in _MATCH_FIELDS and v is not None
    ]
    return ", ".join(parts)


def explain_sensor(
    rules: Sequence[RuleBase],
    site: str,
    sensor: str,
    config: SensorConfig | None,
    *,
    timezone: str = "UTC",
) -> list[ConditionExplanation]:
    """Per condition, every row and whether it matches `sensor`; the chosen row as the engine
    applies it (in the site's `timezone`, with the sensor's counter, or not at all)."""
    kind = config.kind if config else "temperature"
    facts = sensor_facts(site, sensor, kind, config)
    winners = [best_rows(_rows_of(rules, c), facts, MATCH_ORDER) for c in conditions_of(rules)]
    counter = any(kind_of(tied[0]).counter for tied in winners if tied and tied[0].enabled)
    out = []
    for condition in conditions_of(rules):
        if condition == "gateway_offline":
            continue
        rows = _rows_of(rules, condition)
        tied = best_rows(rows, facts, MATCH_ORDER)
        winner = chosen = tied[0] if tied else None
        note = None
        if chosen is not None and chosen.enabled:
            bound = chosen.bound(timezone, config)
            if bound is None:
                note = "not for this sensor: it is read by hand"
            else:
                chosen = bound
            if isinstance(chosen, FaultRule) and (counter or (config and config.unit == "bool")):
                chosen = holding_still(chosen)
                note = "it holds a value for hours by design: only fault readings count"
        notes = []
        for row in rows:
            criteria = row.criteria()
            if not matches(criteria, facts):
                misses = [f"{k}={v}" for k, v in criteria.items() if not matches({k: v}, facts)]
                why = "does not match " + ", ".join(misses)
            elif row is winner:
                why = (
                    "CHOSEN: the most specific matching row"
                    if row.enabled
                    else "CHOSEN, and disabled: switches this condition off for the sensor"
                )
            elif row in tied:
                why = "AMBIGUOUS: as specific as the chosen row (a config error)"
            else:
                why = "matches, but is less specific"
            named = [
                f for f in MATCH_ORDER if specificity(criteria, MATCH_ORDER)[MATCH_ORDER.index(f)]
            ]
            notes.append((row, f"{why} (names: {', '.join(named) or 'nothing'})"))
        out.append(ConditionExplanation(condition, chosen, tuple(notes), note))
    return out


def _rows_of(rules: Sequence[RuleBase], condition: str) -> list[RuleBase]:
    return [r for r in rules if getattr(r, "condition", None) == condition]
