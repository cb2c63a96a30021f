"""Per-protocol codecs: what one raw input from a device (an MQTT message, a Modbus answer, a
serial line, a 1-Wire file) says about which sensor. Pure — no I/O, no clock — so the live
sources, replay and the tests run the same decoding; the matching encoders (what a device
sends) are in `firmware_sim.encode`.

Each codec answers `Decoded` (a sensor's value or its fault; `note` asks for the raw input to
be kept in the quarantine as well) or `Refused` (the input names no sensor we read: it goes
to the quarantine only)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Decoded", "Refused"]


@dataclass(slots=True)
class Decoded:
    """A sensor's value, or the fault its device showed. A value: never changed once made
    (not `frozen`, which costs a microsecond per reading to make)."""

    sensor: str
    value: float | None = None
    fault: str | None = None
    #: (reason, detail) under which the raw input is also quarantined
    note: tuple[str, str] | None = None
    #: the value is an on/off state (1.0 / 0.0), which only a sensor of unit `bool` takes
    state: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """An input that names no sensor we read: quarantined under `reason`."""

    reason: str
    detail: str
