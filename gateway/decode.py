"""Pure decoders: device payloads, Modbus registers and serial lines → numbers.

Each raises `DecodeError` with a short fault reason; they never touch I/O or the clock.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Sequence
from typing import Literal

from gateway.errors import DecodeError

__all__ = [
    "MQTT_PRESETS",
    "decode_mqtt",
    "decode_registers",
    "parse_line",
    "parse_w1_slave",
    "register_count",
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

DataType = Literal["int16", "uint16", "int32", "uint32", "float32"]
_FORMATS: dict[str, str] = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
}


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise DecodeError("not-finite", repr(value))
    return value


def _number(text: str) -> float:
    try:
        return _finite(float(text))
    except ValueError:
        raise DecodeError("unparsable", repr(text[:40])) from None


def decode_mqtt(payload: bytes, fmt: str, value_path: str | None) -> float:
    """The value in an MQTT payload: a plain number, or JSON with a dotted path to the value
    (`fmt` a key of `MQTT_PRESETS`; presets know their device's path). Tasmota reports in °F
    when its TempUnit says so; that is converted here, since the unit travels in the payload."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise DecodeError("unparsable", "payload is not UTF-8") from None
    is_json, default_path = MQTT_PRESETS[fmt]
    value_path = value_path or default_path
    if not is_json:
        return _number(text)
    try:
        # NaN/Infinity are not JSON; reject them rather than let Python's parser accept them.
        node: object = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise DecodeError("unparsable", f"invalid JSON: {exc.msg}") from None
    for part in (value_path or "").split("."):
        if not part:
            continue
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise DecodeError("missing-value", f"no {value_path!r} in payload")
    if isinstance(node, bool) or not isinstance(node, int | float | str):
        raise DecodeError("unparsable", f"{value_path!r} is not a number")
    value = _number(str(node)) if isinstance(node, str) else _finite(float(node))
    if fmt == "tasmota" and '"TempUnit":"F"' in text.replace(" ", ""):
        value = (value - 32.0) * 5.0 / 9.0
    return value


def _reject_constant(name: str) -> float:
    raise DecodeError("not-finite", name)


def register_count(data_type: DataType) -> int:
    return 1 if data_type in ("int16", "uint16") else 2


def decode_registers(
    registers: Sequence[int], data_type: DataType, word_order: Literal["big", "little"] = "big"
) -> float:
    """Registers (16-bit words, as read) → the number they encode."""
    count = register_count(data_type)
    if len(registers) != count:
        raise DecodeError("short-read", f"{len(registers)} registers, {data_type} needs {count}")
    words = list(registers) if word_order == "big" else list(reversed(registers))
    raw = b"".join(struct.pack(">H", w & 0xFFFF) for w in words)
    (value,) = struct.unpack(_FORMATS[data_type], raw)
    return _finite(float(value))


def parse_line(line: str, pattern: re.Pattern[str]) -> tuple[str | None, float]:
    """A serial line → (the `sensor` group's text or None, value). Empty lines are unparsable."""
    match = pattern.search(line)
    if match is None:
        raise DecodeError("unparsable", repr(line[:60]))
    name = match.group("sensor") if "sensor" in pattern.groupindex else None
    return name, _number(match.group("value"))


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
