"""Pure decoders: device payloads, Modbus registers and serial lines → numbers.

Each raises `DecodeError` with a short fault reason; they never touch I/O or the clock.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from typing import Literal

from gateway.errors import DecodeError
from gateway.wire import WireError, loads_bounded

__all__ = [
    "MQTT_PRESETS",
    "STATE_WORDS",
    "decode_mqtt",
    "decode_mqtt_value",
    "decode_registers",
    "parse_line",
    "parse_number",
    "parse_w1_slave",
    "register_count",
    "value_path_for",
]

#: Payload shapes real devices publish out of the box: format → (JSON?, default value path).
MQTT_PRESETS: dict[str, tuple[bool, str | None]] = {
    "plain": (False, None),
    "json": (True, None),
    "tasmota": (True, "DS18B20.Temperature"),  # tele/<device>/SENSOR
    "zigbee2mqtt": (True, "temperature"),  # zigbee2mqtt/<friendly name>
    "shelly": (True, "tC"),  # <id>/status/temperature:0 (gen2)
    "esphome": (False, None),  # <node>/sensor/<name>/state
}

#: Where devices of a shape put the value of each kind of sensor, when the sensor's config names
#: no `value_path`: a zigbee2mqtt climate sensor's `{"temperature": 7.2, "humidity": 81}`, a
#: Shelly gen2 `humidity:0` status `{"id": 0, "rh": 45.3}` or Flood's `flood:0` `{"alarm": true}`.
KIND_PATHS: dict[str, dict[str, str]] = {
    "zigbee2mqtt": {
        "temperature": "temperature",
        "humidity": "humidity",
        "co2": "co2",
        "pressure": "pressure",
        "illuminance": "illuminance_lux",
        "water_leak": "water_leak",
        "contact": "contact",
        "occupancy": "occupancy",
        "smoke": "smoke",
        "battery": "battery",
    },
    "tasmota": {
        "humidity": "*.Humidity",  # SI7021, BME280, AM2301, SHT3X …: named after the model
        "pressure": "*.Pressure",
        "co2": "*.CarbonDioxide",  # SCD30, MH-Z19B
        "energy": "ENERGY.Total",  # kWh, the counter
        "power": "ENERGY.Power",  # W
    },
    "shelly": {
        "temperature": "tC",
        "humidity": "rh",
        "water_leak": "alarm",
        "energy": "aenergy.total|total_act_energy",  # Wh: pm1:0 / switch:0, em1data:0
        "power": "apower|act_power",  # W: pm1:0 / switch:0, em1:0
    },
}


def value_path_for(fmt: str, kind: str, value_path: str | None) -> str | None:
    """The path a sensor's value is read from: its own `value_path`, else where its device's
    shape puts its kind of value, else the shape's default."""
    if value_path is not None:
        return value_path
    return KIND_PATHS.get(fmt, {}).get(kind, MQTT_PRESETS[fmt][1])


DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"]
_FORMATS: dict[str, str] = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
    "int64": ">q",
    "uint64": ">Q",
    "float64": ">d",
}


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise DecodeError("not-finite", repr(value))
    return value


#: What a device may send as a number: a plain decimal, as thermometers print them.
_PLAIN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
#: What Python would also read as a number; each is a fault with its reason, never a value.
_NOT_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_SCIENTIFIC = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][+-]?[0-9]+")
MAX_NUMBER_CHARS = 32


def parse_number(text: str) -> float:
    """The one number parser of every source: a plain decimal (`21.5`, `-3`, `+0.25`) → float.
    `nan`, `inf` and numbers too large for a float (`1e309`) are `not-finite` faults; anything
    else — exponents included, which no thermometer prints and which a pattern would otherwise
    cut to a different number — is `unparsable`."""
    text = text.strip()
    if len(text) > MAX_NUMBER_CHARS:
        raise DecodeError("unparsable", f"a number of {len(text)} characters")
    if _PLAIN.fullmatch(text):
        return float(text)  # a plain decimal of ≤ 32 characters is always finite
    if _NOT_FINITE.fullmatch(text):
        raise DecodeError("not-finite", repr(text))
    if _SCIENTIFIC.fullmatch(text):
        if not math.isfinite(float(text)):
            raise DecodeError("not-finite", repr(text))
        raise DecodeError("unparsable", f"{text!r} is not a plain decimal")
    raise DecodeError("unparsable", repr(text[:40]))


#: Sensor payloads are small; anything larger is not a reading.
MAX_PAYLOAD = 64 * 1024


def _at_path(node: object, value_path: str | None) -> object:
    """The node a dotted path (keys, list indices) leads to in decoded JSON. `*` stands for
    any key at its level (Tasmota names a reading's object after the sensor's model:
    `*.Humidity` finds SI7021's, BME280's or AM2301's), and `a|b` tries `a`, then `b` (a
    Shelly PM's `aenergy.total` or an EM's `total_act_energy`)."""
    for path in (value_path or "").split("|"):
        found = _walk(node, [p for p in path.split(".") if p])
        if found is not _MISSING:
            return found
    raise DecodeError("missing-value", f"no {value_path!r} in payload")


_MISSING = object()


def _walk(node: object, parts: list[str]) -> object:
    for i, part in enumerate(parts):
        if part == "*" and isinstance(node, dict):
            for child in node.values():  # bounded: the payload is (MAX_PAYLOAD)
                found = _walk(child, parts[i + 1 :])
                if found is not _MISSING and not isinstance(found, dict | list):
                    return found
            return _MISSING
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


#: How on/off sensors say their state: zigbee2mqtt and Shelly send JSON true/false, ESPHome's
#: binary sensors and Tasmota's relays ON/OFF.
STATE_WORDS: dict[str, float] = {"on": 1.0, "off": 0.0, "true": 1.0, "false": 0.0}


def decode_mqtt(payload: bytes, fmt: str, value_path: str | None) -> float:
    """The number in an MQTT payload (an on/off state is `unparsable` here: see
    `decode_mqtt_value`)."""
    value, is_state = decode_mqtt_value(payload, fmt, value_path)
    if is_state:
        raise DecodeError("unparsable", "an on/off state where a number was expected")
    return value


def decode_mqtt_value(payload: bytes, fmt: str, value_path: str | None) -> tuple[float, bool]:
    """The value in an MQTT payload, and whether it is an on/off state (1.0 / 0.0 — which only
    a sensor whose unit is `bool` takes). A plain number or state word, or JSON with a dotted
    path to the value (`fmt` a key of `MQTT_PRESETS`; presets know their device's path).
    Tasmota reports in °F when its TempUnit says so; that is converted here, since the unit
    travels in the payload."""
    if len(payload) > MAX_PAYLOAD:
        raise DecodeError("too-large", f"{len(payload)} bytes")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise DecodeError("unparsable", "payload is not UTF-8") from None
    is_json, default_path = MQTT_PRESETS[fmt]
    value_path = value_path or default_path
    if not is_json:
        state = STATE_WORDS.get(text.lower())
        return (state, True) if state is not None else (parse_number(text), False)
    try:
        # bounded: size, containers (so nesting) and digits; NaN/Infinity/1e309 refused
        node: object = loads_bounded(text, max_bytes=MAX_PAYLOAD, max_containers=256)
    except WireError as exc:
        reason = (
            "not-finite" if "finite" in str(exc) or "not a number" in str(exc) else "unparsable"
        )
        raise DecodeError(reason, str(exc)) from None
    node = _at_path(node, value_path)
    if isinstance(node, bool):
        return (1.0 if node else 0.0), True
    if isinstance(node, str) and node.strip().lower() in STATE_WORDS:
        return STATE_WORDS[node.strip().lower()], True
    if not isinstance(node, int | float | str):
        raise DecodeError("unparsable", f"{value_path!r} is not a number")
    value = parse_number(node) if isinstance(node, str) else _finite(float(node))
    if fmt == "tasmota" and '"TempUnit":"F"' in text.replace(" ", ""):
        value = (value - 32.0) * 5.0 / 9.0
    return value, False


def register_count(data_type: DataType) -> int:
    """How many 16-bit registers hold a value of `data_type`."""
    return struct.calcsize(_FORMATS[data_type]) // 2


def counter_wrap(data_type: DataType) -> float | None:
    """The value an unsigned counter of `data_type` wraps at (None: a signed or float one)."""
    return float(1 << (16 * register_count(data_type))) if data_type.startswith("u") else None


def decode_registers(
    registers: Sequence[int], data_type: DataType, word_order: Literal["big", "little"] = "big"
) -> float:
    """Registers (16-bit words, as read) → the number they encode. `word_order` little: the
    least significant word comes first (bytes within a word are always big-endian, as Modbus
    sends them)."""
    count = register_count(data_type)
    if len(registers) != count:
        raise DecodeError("short-read", f"{len(registers)} registers, {data_type} needs {count}")
    words = list(registers) if word_order == "big" else list(reversed(registers))
    raw = b"".join(struct.pack(">H", w & 0xFFFF) for w in words)
    (value,) = struct.unpack(_FORMATS[data_type], raw)
    return _finite(float(value))


def _value_group_end(source: str) -> int | None:
    """Where the `(?P<value>…)` group of a pattern's source ends (the index of its `)`)."""
    start = source.find("(?P<value>")
    if start < 0:
        return None
    depth, i, in_class = 0, start, False
    while i < len(source):
        char = source[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _loosened(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """The pattern with its value group taking any token, so that a line whose value is not a
    number (`T1=nan`) still names its sensor and becomes that sensor's fault reading."""
    end = _value_group_end(pattern.pattern)
    if end is None:
        return None
    start = pattern.pattern.find("(?P<value>")
    source = pattern.pattern[:start] + r"(?P<value>[^\s,;|]+)" + pattern.pattern[end + 1 :]
    try:
        return re.compile(source, pattern.flags)
    except re.error:
        return None


def parse_line(line: str, pattern: re.Pattern[str]) -> tuple[str | None, float]:
    """A serial line → (the `sensor` group's text or None, value). Empty lines are unparsable.
    A line whose value is not a plain decimal raises DecodeError with `sensor` set when the
    line still names its sensor, so that it becomes that sensor's fault reading."""
    match = pattern.search(line)
    if match is None:
        loose = _loosened(pattern)
        match = loose.search(line) if loose is not None else None
        if match is None or "sensor" not in (loose.groupindex if loose else {}):
            raise DecodeError("unparsable", repr(line[:60]))
        sensor = match.group("sensor")
        try:
            parse_number(match.group("value"))
        except DecodeError as exc:
            raise DecodeError(exc.reason, exc.detail, sensor=sensor) from None
        raise DecodeError("unparsable", repr(line[:60]), sensor=sensor)
    name = match.group("sensor") if "sensor" in pattern.groupindex else None
    # The whole token where the value starts, not only what the group matched: `T1=2.5e1`
    # must not read as 2.5, nor `T1=1e309` as 1.0.
    token = _TOKEN.match(line, match.start("value"))
    try:
        return name, parse_number(token.group(0) if token else match.group("value"))
    except DecodeError as exc:
        raise DecodeError(exc.reason, exc.detail, sensor=name) from None


#: A value token on a serial line: up to the next space or separator.
_TOKEN = re.compile(r"[^\s,;|]+")

#: The DS18B20 scratchpad right after power-on: 85 °C in bytes 0-1, count-remain 0x0C.
_POWER_ON_RESET = ("50", "05")


def parse_w1_slave(text: str) -> float:
    """The Linux w1_therm file of a DS18B20 → °C, or the fault it shows.

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125
    """
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 2 or "crc=" not in lines[0] or "t=" not in lines[1]:
        raise DecodeError("unparsable", repr(text[:80]))
    if not lines[0].endswith("YES"):
        raise DecodeError("crc", lines[0])
    scratchpad = lines[0].split(":")[0].split()
    if scratchpad and all(byte == "00" for byte in scratchpad):
        raise DecodeError("all-zero-scratchpad", lines[0])
    try:
        millis = int(lines[1].rsplit("t=", 1)[1])
    except ValueError:
        raise DecodeError("unparsable", lines[1]) from None
    if millis == 85000 and tuple(scratchpad[:2]) == _POWER_ON_RESET and scratchpad[6:7] == ["0c"]:
        raise DecodeError("ds18b20-power-on-reset", lines[1])
    if 127930 <= millis <= 127940:
        raise DecodeError("ds18b20-insufficient-power", lines[1])
    return millis / 1000.0
