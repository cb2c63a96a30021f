"""`husvakt rules explain`: which row applies to a sensor for each condition, and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import SensorConfig
from stream.config import MATCH_ORDER, RuleBase, conditions_of, sensor_facts
from stream.matching import best_rows, matches, specificity

__all__ = ["ConditionExplanation", "explain_sensor", "settings_of"]

_MATCH_FIELDS = {"id", "condition", "enabled", *MATCH_ORDER}


@dataclass(frozen=True)
class ConditionExplanation:
    condition: str
    chosen: RuleBase | None
    rows: tuple[tuple[RuleBase, str], ...]


def settings_of(row: RuleBase) -> str:
    """What a row decides (its levels and times), as YAML-ish `key: value` pairs."""
    data = row.model_dump(exclude_defaults=False)
    parts = [
        f"{k}: {v:g}" if isinstance(v, float) else f"{k}: {v}"
        for k, v in data.items()
        if k not in _MATCH_FIELDS and v is not None and k not in ("auto_resolve", "title")
    ]
    return ", ".join(parts)


def explain_sensor(
    rules: Sequence[RuleBase], site: str, sensor: str, config: SensorConfig | None
) -> list[ConditionExplanation]:
    kind = config.kind if config else "temperature"
    facts = sensor_facts(site, sensor, kind, config)
    out = []
    for condition in conditions_of(rules):
        if condition == "gateway_offline":
            continue
        rows = [r for r in rules if getattr(r, "condition", None) == condition]
        tied = best_rows(rows, facts, MATCH_ORDER)
        chosen = tied[0] if tied else None
        notes = []
        for row in rows:
            criteria = row.criteria()
            if not matches(criteria, facts):
                misses = [f"{k}={v}" for k, v in criteria.items() if not matches({k: v}, facts)]
                why = "does not match " + ", ".join(misses)
            elif row is chosen:
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
        out.append(ConditionExplanation(condition, chosen, tuple(notes)))
    return out
