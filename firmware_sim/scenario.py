"""Scenarios: simulated devices, their signals and a timeline of events — as data (YAML).

A scenario says what each device would have measured and reported over a stretch of time:

    name: freezing-night
    start: 2026-01-14T22:00:00Z
    duration: 8h
    devices:
      - {sensor: basement-t1, protocol: mqtt, every: 60s,
         signal: {baseline: 8.5, daily_amplitude: 0.5, noise: 0.05, seed: 1}}
    timeline:
      - {at: 2h10m, sensor: basement-t1, ramp: {rate: -0.3, per: 10m, to: 2.5}}
      - {at: 5h, uplink_down: 40m}
      - {at: 6h, sensor: basement-t1, fault: ds18b20-reset, for: 2m}

`at` is the offset from `start`. `outputs()` yields what the devices emit, in time order, as
raw device outputs (a number, a fault the protocol reports, or line noise) — the same thing
the simulated devices send over their protocols, without the protocols. The model is seeded:
the same scenario gives the same outputs, to the bit.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal, NamedTuple, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from ruamel.yaml import YAML

__all__ = ["Device", "Event", "Output", "Scenario", "load_scenario"]

_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$"
)


def _seconds(value: object) -> object:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not value.strip() or match is None or not any(match.groups()):
            raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 10m, 2h10m")
        h, m, s = (float(g) if g else 0.0 for g in match.groups())
        return h * 3600 + m * 60 + s
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]
Fault = Literal[
    "dropout",  # the device says nothing
    "stuck",  # the value freezes at what it was
    "spike",  # one absurd value
    "ds18b20-reset",  # a DS18B20 reporting its 85 °C power-on value
    "ds18b20-crc",  # a 1-Wire read with a failed CRC
    "disconnected",  # an Arduino/ESP node's −127 °C
    "modbus-exception",  # the device answers with exception 4
    "modbus-timeout",  # the device does not answer
    "serial-garbage",  # line noise instead of a reading
    "reboot",  # silence, then the device comes back
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Signal(_Frozen):
    """baseline + daily cycle (peak at `peak_hour` UTC) + drift + a piecewise-linear course
    (`points`: offset from the start → °C, held flat before the first and after the last)
    + seeded Gaussian noise."""

    baseline: float = 0.0
    daily_amplitude: float = 0.0
    peak_hour: float = 15.0
    drift_per_hour: float = 0.0
    noise: float = 0.0
    seed: int = 0
    points: tuple[tuple[Seconds, float], ...] = Field(default=(), max_length=10_000)

    @model_validator(mode="after")
    def _points_in_order(self) -> Self:
        offsets = [at for at, _ in self.points]
        if offsets != sorted(offsets):
            raise ValueError("signal points must be given in time order")
        return self

    def course(self, t: float) -> float:
        """The piecewise-linear part at `t` seconds from the start (0 without points)."""
        points = self.points
        if not points:
            return 0.0
        i = bisect.bisect_right(points, t, key=lambda p: p[0])
        if i == 0:
            return points[0][1]
        if i == len(points):
            return points[-1][1]
        (t0, v0), (t1, v1) = points[i - 1], points[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


class Device(_Frozen):
    sensor: str
    protocol: Literal["mqtt", "modbus", "serial", "onewire"] = "mqtt"
    every: Seconds = 60.0
    signal: Signal
    topic: str | None = Field(
        default=None, description="MQTT topic for `husvakt sim` (default: sim/SENSOR)"
    )
    format: Literal["plain", "json", "tasmota", "zigbee2mqtt", "shelly", "esphome"] = Field(
        default="plain", description="the MQTT payload shape `husvakt sim` publishes"
    )
    value_path: str | None = Field(
        default=None,
        description="the (dotted) key a JSON-shaped device publishes its value under, e.g. "
        "zigbee2mqtt's `water_leak` or Tasmota's `SI7021.Humidity` (default: the shape's own)",
        max_length=100,
    )
    states: bool = Field(
        default=False,
        description="an on/off device: its values (0/1) go out as JSON true/false, or ON/OFF",
    )
    data_type: Literal[
        "int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"
    ] = Field(default="int16", description="Modbus: the type its registers hold the value in")
    word_order: Literal["big", "little"] = Field(default="big", description="Modbus")
    scale: float = Field(
        default=0.1, gt=0, description="Modbus: the value of one count (a thermometer's 0.1 °C)"
    )

    @property
    def mqtt_topic(self) -> str:
        """Where the device publishes, simulated live."""
        return self.topic or f"sim/{self.sensor}"


class Ramp(_Frozen):
    """From `at`, move by `rate` per `per` until reaching `to`, then stay there."""

    rate: float
    per: Seconds = 60.0
    to: float


class Event(_Frozen):
    at: Seconds
    sensor: str | None = None
    ramp: Ramp | None = None
    fault: Fault | None = None
    duration: Seconds = Field(default=60.0, alias="for")
    uplink_down: Seconds | None = None
    power_cut: Seconds | None = None
    #: for a `spike`: the absurd value shown (default: 60 above the signal)
    value: float | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_thing(self) -> Self:
        kinds = [
            self.ramp is not None,
            self.fault is not None,
            self.uplink_down is not None,
            self.power_cut is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError("an event is one of: ramp, fault, uplink_down, power_cut")
        if (self.ramp or self.fault) and not self.sensor:
            raise ValueError("a ramp or a fault names its sensor")
        if self.value is not None and self.fault != "spike":
            raise ValueError("only a spike has a value")
        return self


class Scenario(_Frozen):
    name: str
    description: str = ""
    start: datetime
    duration: Seconds
    devices: tuple[Device, ...] = Field(min_length=1)
    timeline: tuple[Event, ...] = ()

    @model_validator(mode="after")
    def _known_sensors(self) -> Self:
        known = {d.sensor for d in self.devices}
        for i, event in enumerate(self.timeline):
            if event.sensor is not None and event.sensor not in known:
                raise ValueError(f"timeline[{i}] names {event.sensor!r}, which is not a device")
        return self

    @classmethod
    def single(
        cls,
        sensor: str,
        *,
        start: datetime,
        signal: Signal | dict[str, object],
        protocol: Literal["mqtt", "modbus", "serial", "onewire"] = "mqtt",
        every: float = 60.0,
        duration: float = 86400.0,
        timeline: Sequence[Event | dict[str, object]] = (),
    ) -> Scenario:
        """A scenario of one device (what a test's or an integrator's simulated device plays)."""
        return cls.model_validate(
            {
                "name": sensor,
                "start": start,
                "duration": duration,
                "devices": [
                    {"sensor": sensor, "protocol": protocol, "every": every, "signal": signal}
                ],
                "timeline": [
                    {"sensor": sensor, **e} if isinstance(e, dict) else e for e in timeline
                ],
            }
        )

    def outputs(self) -> Iterator[Output]:
        """Every device output over the scenario, in time order (ties by device order),
        generated lazily: a day of a thousand sensors never sits in memory at once."""
        # Devices that sample alike — the same period, no faults, no power cuts — are played
        # in lockstep, one time step for all of them in device order: what merging their
        # streams gives, without a heap of a thousand streams and a timestamp per output.
        power = bool(self.outages("power"))
        alike: dict[float, list[int]] = {}
        streams: list[Iterator[Output]] = []
        for i, d in enumerate(self.devices):
            if power or any(e.sensor == d.sensor and e.fault for e in self.timeline):
                streams.append(self._device_outputs(d, i))
            else:
                alike.setdefault(d.every, []).append(i)
        streams.extend(self._lockstep(every, orders) for every, orders in alike.items())
        # outputs order as tuples, by (when, at, order): the same as by (at, order) — `when`
        # is `start + at` and never decreases as `at` grows, and `order` is the device's
        yield from streams[0] if len(streams) == 1 else heapq.merge(*streams)

    def _lockstep(self, every: float, orders: list[int]) -> Iterator[Output]:
        """The outputs of devices of one period without faults or power cuts, step by step
        (each device's noise drawn in its own stream, as `_device_outputs` draws it)."""
        plays = []
        for order in orders:
            device = self.devices[order]
            noise, level = self._noise_and_level(device)
            shape = (device.format, device.value_path, device.states)
            plays.append(
                (order, device.sensor, device.protocol, shape, noise.gauss, device.signal.noise,
                 level)
            )  # fmt: skip
        start, duration, make = self.start, self.duration, tuple.__new__
        t = 0.0
        while t <= duration:
            when = start + timedelta(seconds=t)
            for order, sensor, protocol, shape, gauss, spread, level in plays:
                jitter = gauss(0.0, spread) if spread else 0.0
                value = level(when, t, jitter)
                yield make(Output, (when, t, order, sensor, protocol, value, None, *shape))
            t += every

    def _noise_and_level(
        self, device: Device
    ) -> tuple[random.Random, Callable[[datetime, float, float], float]]:
        """A device's noise stream (one per device, drawn once per sample time — also while
        the power is off — so its outputs are the same however the scenario is read) and
        its level."""
        ramps = [e for e in self.timeline if e.sensor == device.sensor and e.ramp]
        signal = device.signal
        noise = random.Random(f"{signal.seed}:{device.sensor}")  # noqa: S311 - simulated noise
        return noise, _level_of(signal, ramps)

    def device_outputs(self, index: int) -> Iterator[Output]:
        """One device's outputs, in time order (what a live simulated device plays)."""
        return self._device_outputs(self.devices[index], index)

    def outages(self, kind: Literal["uplink", "power"]) -> list[tuple[float, float]]:
        """(start, end) offsets of uplink outages or whole-site power cuts."""
        spans = []
        for e in self.timeline:
            length = e.uplink_down if kind == "uplink" else e.power_cut
            if length is not None:
                spans.append((e.at, e.at + length))
        return sorted(spans)

    def _device_outputs(self, device: Device, order: int) -> Iterator[Output]:
        faults = [e for e in self.timeline if e.sensor == device.sensor and e.fault]
        power = self.outages("power")
        if not power and not faults:  # the common case, the same outputs without the checks
            yield from self._lockstep(device.every, [order])
            return
        signal, sensor, protocol = device.signal, device.sensor, device.protocol
        shape = (device.format, device.value_path, device.states)
        noise, level = self._noise_and_level(device)
        start, every = self.start, device.every
        spread = signal.noise
        last_value: float | None = None
        t = 0.0
        while t <= self.duration:
            jitter = noise.gauss(0.0, spread) if spread else 0.0
            if power and any(a <= t < b for a, b in power):
                t += every
                continue
            when = start + timedelta(seconds=t)
            value = level(when, t, jitter)
            event = (
                next((e for e in faults if e.at <= t < e.at + e.duration), None) if faults else None
            )
            fault = event.fault if event is not None else None
            if fault in ("dropout", "reboot"):
                pass
            elif fault == "stuck":
                yield Output(when, t, order, sensor, protocol, last_value or value, None, *shape)
            elif fault == "spike":
                assert event is not None
                shown = value + 60.0 if event.value is None else event.value
                yield Output(when, t, order, sensor, protocol, shown, None, *shape)
            elif fault is not None:
                yield Output(when, t, order, sensor, protocol, None, fault, *shape)
            else:
                yield Output(when, t, order, sensor, protocol, value, None, *shape)
                last_value = value
            t += every


def _level_of(signal: Signal, ramps: Sequence[Event]) -> Callable[[datetime, float, float], float]:
    """A device's level at (`when`, `t` seconds from the start) with its `jitter`: its signal's
    fields read once, not per sample; the arithmetic is the same, operation for operation."""
    baseline, amplitude, peak = signal.baseline, signal.daily_amplitude, signal.peak_hour
    drift, course = signal.drift_per_hour, (signal.course if signal.points else None)
    steps = [(e.at, e.ramp) for e in ramps if e.ramp is not None]
    cos, tau = math.cos, 2 * math.pi

    def level(when: datetime, t: float, jitter: float) -> float:
        hour = when.hour + when.minute / 60 + when.second / 3600
        value = (
            baseline
            + amplitude * cos(tau * (hour - peak) / 24)
            + drift * t / 3600
            + (course(t) if course is not None else 0.0)
        )
        for at, ramp in steps:
            if t < at:
                continue
            moved = value + ramp.rate * (t - at) / ramp.per
            value = max(moved, ramp.to) if ramp.rate < 0 else min(moved, ramp.to)
        return round(value + jitter, 2)

    return level


class Output(NamedTuple):
    """What one device emitted once: a value, or a fault in its protocol's terms. A tuple
    (cheap to make, a day of a thousand devices makes 1.44 million), ordered by its first
    fields: time, then device."""

    when: datetime
    at: float
    order: int
    sensor: str
    protocol: str
    value: float | None
    fault: str | None
    #: the MQTT payload shape the device publishes, the key it puts its value under (None: the
    #: shape's own) and whether its values are on/off states
    format: str = "plain"
    path: str | None = None
    state: bool = False


def load_scenario(path: Path) -> Scenario:
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    return Scenario.model_validate(data)
