"""The rule kinds, one module each, and the registry of them: the only place that lists them.

A config's row is of the kind whose `keys` it holds (`state`, `rate`, `meter`), else of the
kind deciding its condition (`heat_rise` → rise, `sensor_offline` → offline …), else a
threshold. Everything that needs to know the kinds — the row union the config parses, the
default rows, the state codec, the sensor pass of `stream.rules`, the condition titles — asks
here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Discriminator, Tag, TypeAdapter

from stream.kinds import fault, gateway_offline, meter, offline, rise, state, threshold
from stream.kinds.base import DECIDED_BY, SYSTEM, RuleBase, RuleKind, is_threshold

__all__ = [
    "CONDITIONS",
    "DECIDED_BY",
    "DEFAULT_RULES",
    "KINDS",
    "SYSTEM",
    "TITLES",
    "RuleKind",
    "RuleRow",
    "is_threshold",
    "kind_of",
    "kind_of_state",
    "parse_rule",
    "state_kind",
]

#: Every kind, in the order a row's keys are tried (a row with `state` is a state row before
#: it could be anything else).
KINDS: tuple[RuleKind, ...] = (
    state.KIND,
    meter.KIND,
    threshold.KIND,
    rise.KIND,
    offline.KIND,
    fault.KIND,
    gateway_offline.KIND,
)

_BY_NAME = {k.name: k for k in KINDS}
_BY_ROW = {k.row: k for k in KINDS}
_BY_STATE: dict[type, RuleKind] = {}
_BY_TAG: dict[str, RuleKind] = {}
for _kind in KINDS:
    if _kind.state is not None:
        _BY_STATE.setdefault(_kind.state, _kind)
        _BY_TAG.setdefault(_kind.tag, _kind)
    for _condition in _kind.conditions:
        DECIDED_BY[_condition] = _kind.name

#: A table that does not mention a built-in condition gets its default row, so a site that
#: only tunes its frost levels keeps fire, heat-rise, offline and fault detection.
DEFAULT_RULES: tuple[RuleBase, ...] = tuple(row for k in KINDS for row in k.defaults)

#: The built-in conditions a rule row can decide, in the order `rules explain` lists them (a
#: config's rows add their own: `stream.config.conditions_of`).
CONDITIONS: tuple[str, ...] = tuple(c for k in KINDS for c in k.conditions)

#: The titles of every built-in condition a kind decides, per language.
TITLES: Mapping[str, Mapping[str, str]] = {c: t for k in KINDS for c, t in k.conditions.items()}


def kind_of(rule: RuleBase) -> RuleKind:
    """The kind a row belongs to."""
    return _BY_ROW[type(rule)]


def kind_of_state(value: object) -> RuleKind:
    """The kind a per-sensor state belongs to."""
    return _BY_STATE[type(value)]


def state_kind(tag: str) -> RuleKind:
    """The kind of a saved state's tag (`t`); KeyError when no kind has it."""
    return _BY_TAG[tag]


def _row_kind(data: object) -> str:
    if isinstance(data, Mapping):
        for kind in KINDS:
            if any(key in data for key in kind.keys):
                return kind.name
        condition = data.get("condition")
    else:
        found = _BY_ROW.get(type(data))  # type: ignore[arg-type]
        if found is not None:
            return found.name
        condition = getattr(data, "condition", "")
    return DECIDED_BY.get(str(condition), "threshold")


if TYPE_CHECKING:
    RuleRow = RuleBase
else:
    RuleRow = Annotated[
        Union[tuple(Annotated[k.row, Tag(k.name)] for k in KINDS)],  # noqa: UP007 - built
        Discriminator(_row_kind),
    ]
_ROW: TypeAdapter[Any] = TypeAdapter(RuleRow)


def parse_rule(data: Mapping[str, Any]) -> RuleBase:
    """One row from its YAML/JSON form."""
    row: RuleBase = _ROW.validate_python(dict(data))
    return row
