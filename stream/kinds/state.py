"""The state kind: an on/off sensor (unit `bool`) showing a state — a water leak detected, a
door left open, a pump's failure input. It is the threshold kind with the state's own levels
(on: above 0.5, clear at 0; off: below 0.5, clear at 1), so hold, flapping and titles work as
for any threshold."""

from __future__ import annotations

from dataclasses import replace

from pydantic import Field, TypeAdapter, model_validator

from gateway.models import Slug
from stream.kinds import threshold
from stream.kinds.threshold import ThresholdRule

__all__ = ["KIND", "StateRule"]

_STATE: TypeAdapter[bool] = TypeAdapter(bool)


class StateRule(ThresholdRule):
    """Raise `condition` when an on/off sensor shows `state` for `hold`: a water leak
    detected (at once), a door left open (`state: off` on a contact sensor, hold 30m), a
    pump's failure input. Its levels are the state's own, so it takes no `below`, `above`,
    `clear` or `critical`. `kind` must be named (a thermometer's 1.0 °C is no state)."""

    kind: Slug  # required here: every state row names its sensors' kind
    state: bool = Field(description="the state that raises the condition: on/true or off/false")

    @model_validator(mode="before")
    @classmethod
    def _levels_of_the_state(cls, data: object) -> object:
        if not isinstance(data, dict) or "state" not in data:
            return data
        given = [f for f in ("below", "above", "clear", "critical") if f in data]
        if given:
            raise ValueError(f"a state row takes no {', '.join(given)}: its levels are the state's")
        on = _STATE.validate_python(data["state"])  # on/off, true/false, yes/no, 1/0
        levels = {"above": 0.5, "clear": 0.0} if on else {"below": 0.5, "clear": 1.0}
        return {**data, **levels}


KIND = replace(
    threshold.KIND, name="state", row=StateRule, keys=("state",), conditions={}, defaults=()
)
