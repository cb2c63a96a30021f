"""Pure normalisation: a raw sample from a source → a `Reading` of the wire contract."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from gateway.config import SensorConfig
from gateway.models import Reading
from gateway.protocols import Decoded
from gateway.wire import LIMITS

__all__ = ["PLAUSIBLE", "Sample", "normalize"]

#: Physically plausible ranges per kind; outside them a value is a sensor fault. Temperature is
#: the DS18B20 datasheet range (−55…+125 °C), which covers every thermometer we read.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "temperature": (-55.0, 125.0),
    "humidity": (0.0, 100.0),
}

#: The largest magnitude the wire carries.
MAX_VALUE = LIMITS.value
#: the bounds of a kind without a plausible range of its own
_ANY = (-MAX_VALUE, MAX_VALUE)

#: DallasTemperature's DEVICE_DISCONNECTED_C, sent by Arduino/ESP nodes when the probe is gone.
DISCONNECTED_C = -127.0


@dataclass(slots=True)
class Sample:
    """What a source saw: a value (in the sensor's own unit, unscaled) or the fault it hit.
    `committed`, if given, is called once the reading is safe in the outbox (or quarantined):
    an MQTT source acknowledges the message then. A value: never changed once made (not
    `frozen`, which costs a microsecond per reading to make)."""

    sensor: str
    ts: datetime
    value: float | None = None
    fault: str | None = None
    committed: Callable[[], object] | None = None
    #: the value is an on/off state (1.0 / 0.0), which only a sensor of unit `bool` takes
    state: bool = False

    @classmethod
    def of(
        cls, decoded: Decoded, ts: datetime, committed: Callable[[], object] | None = None
    ) -> Sample:
        """What a codec decoded, seen at `ts`."""
        return cls(decoded.sensor, ts, decoded.value, decoded.fault, committed, decoded.state)


#: The wire allows fault texts of 64 characters without control characters; a device's error
#: message (a Modbus exception's text, say) is cut and cleaned to fit, never refused downstream.
FAULT_CHARS = 64
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _fault_text(fault: str) -> str:
    return _UNPRINTABLE.sub("?", fault)[:FAULT_CHARS] or "fault"


def _ds18b20_fault(value: float) -> str | None:
    """A node reporting a DS18B20 passes its glitches on as numbers: 85.0 is the power-on value
    (a node cannot show the scratchpad that would prove a real 85 °C), 127.94 a brown-out."""
    if value == 85.0:
        return "ds18b20-power-on-reset"
    if 127.93 <= value <= 127.94:
        return "ds18b20-insufficient-power"
    return None


def _to_celsius(value: float, unit: str) -> float:
    if unit == "°F":
        return (value - 32.0) * 5.0 / 9.0
    if unit == "K":
        return value - 273.15
    return value


def normalize(
    sample: Sample, sensor: SensorConfig, *, site: str, gateway: str, seq: int
) -> Reading:
    """Scale, convert to °C and check plausibility; faults become `quality="fault"` readings."""
    # the config's fields read once, from its dict (a model's attribute costs several times
    # a dict's item, and every reading passes here)
    config = sensor.__dict__
    kind, unit_in = config["kind"], config["unit"]
    temperature = kind == "temperature"
    unit = "°C" if temperature else unit_in
    fault = sample.fault
    value = sample.value
    if fault is None and (value is None or not math.isfinite(value)):
        fault = "not-finite"
    if fault is None and value is not None and unit_in == "bool":
        # an on/off sensor: a state, or a number that is one (a Modbus coil's 0/1)
        if value not in (0.0, 1.0):
            fault = "not-a-state"
    elif fault is None and sample.state:
        fault = "not-a-number"  # `true` from a thermometer is never 1 °C
    elif fault is None and value is not None:
        value = value * config["scale"] + config["offset"]
        if temperature:
            value = _to_celsius(value, unit_in)
            if value == DISCONNECTED_C:
                fault = "disconnected"
            elif config["probe"] == "ds18b20":
                fault = _ds18b20_fault(value)
        low, high = PLAUSIBLE.get(kind, _ANY)
        if fault is None and not low <= value <= high:
            fault = "out-of-range"
    shown = value if value is not None and math.isfinite(value) else 0.0
    if abs(shown) > MAX_VALUE:
        shown = 0.0  # a fault reading's value means nothing, and the wire carries no more
    quality: Literal["good", "fault"] = "fault" if fault else "good"
    text = _fault_text(fault) if fault else None
    ts = sample.ts
    if ts.tzinfo is UTC:
        # every field is checked above or comes from the validated config: no second check
        return Reading.trusted(
            site, gateway, config["id"], kind, round(shown, 6), unit, ts, seq, quality, text
        )
    return Reading(  # a time in another zone: validated, which converts it
        site=site,
        gateway=gateway,
        sensor=config["id"],
        kind=kind,
        value=round(shown, 6),
        unit=unit,
        ts=ts,
        seq=seq,
        quality=quality,
        fault=text,
    )
