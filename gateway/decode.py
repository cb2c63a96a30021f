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

__all__ = ["decode_mqtt", "decode_registers", "parse_line", "register_count"]

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


def decode_mqtt(payload: bytes, fmt: Literal["plain", "json"], value_path: str | None) -> float:
    """The value in an MQTT payload: a plain number, or JSON with a dotted path to the value."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise DecodeError("unparsable", "payload is not UTF-8") from None
    if fmt == "plain":
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
    return _number(str(node)) if isinstance(node, str) else _finite(float(node))


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
