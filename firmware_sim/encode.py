"""What simulated devices send, per protocol — the encoders matching the gateway's codecs
(`gateway/protocols/`), with the faults real devices show in their protocol's own terms:
a DS18B20's 85 °C power-on value and CRC failures, −127 °C for a loose connector, line noise,
Modbus exceptions and silence. Every simulated device, `husvakt sim` and replay use these,
so the same output means the same bytes everywhere. (firmware_sim imports nothing of ours.)"""

from __future__ import annotations

import json
import struct

from firmware_sim.scenario import Output

__all__ = [
    "JSON_PATH",
    "MODBUS_DEVICE_FAILURE",
    "MODBUS_TYPES",
    "modbus_register",
    "modbus_words",
    "mqtt_message",
    "mqtt_payload",
    "serial_line",
    "shown",
    "text",
    "w1_slave",
]

W1_OK = (
    "{b0:02x} {b1:02x} 4b 46 7f ff 0e 10 00 : crc=00 YES\n"
    "{b0:02x} {b1:02x} 4b 46 7f ff 0e 10 00 t={milli}\n"
)
W1_RESET = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"
W1_CRC = "72 01 4b 46 7f ff 0e 10 57 : crc=12 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
#: Where the plain `json` shape keeps its value (a gateway's `value_path` for such a device)
JSON_PATH = "temperature"
#: Modbus exception 4, "server device failure": what a device with a broken probe answers
MODBUS_DEVICE_FAILURE = 4


def shown(output: Output) -> float | None:
    """The temperature a device shows for the output: its value, the −127 °C of a loose
    connector, the 85 °C of a DS18B20 power-on reset; None when it shows no number."""
    if output.fault == "disconnected":
        return -127.0
    if output.fault == "ds18b20-reset":
        return 85.0
    return output.value if output.fault is None else None


def text(output: Output, value: float | None = None) -> str | None:
    """The reading as a device prints it (`value`: what `shown` gives, in the device's own
    units, when it scales); None when the fault has no printed form (the device says
    nothing)."""
    if output.fault == "ds18b20-crc":
        return "nan"  # ESPHome and most firmwares publish a failed read as NaN
    if output.fault == "serial-garbage":
        return "\x00\x7f#@!"
    number = shown(output) if value is None else value
    return None if number is None else f"{number:.2f}"


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def mqtt_payload(fmt: str, printed: str, path: str | None = None, state: bool = False) -> str:
    """A reading in the shape a real device of that kind publishes (a failed read, NaN, is
    `null` in a JSON shape; line noise goes out as it is). `path`: the (dotted) key the device
    puts its value under instead of the shape's own (zigbee2mqtt's `water_leak`); `state`: an
    on/off device, whose 0/1 goes out as JSON true/false or ON/OFF."""
    if not _is_number(printed):
        return printed
    number = None if printed.lower() == "nan" else float(printed)
    value: float | bool | None = number
    if state and number is not None:
        value = number >= 0.5
        if fmt in ("plain", "esphome"):
            return "ON" if value else "OFF"
    if fmt in ("plain", "esphome"):
        return printed
    if path is not None:
        heads: dict[str, dict[str, object]] = {
            "json": {},
            "tasmota": {"Time": "1970-01-01T00:00:00"},
            "zigbee2mqtt": {"battery": 97, "linkquality": 120},
            "shelly": {"id": 0},
        }
        return json.dumps({**heads[fmt], **_nested(path, value)})
    shapes: dict[str, object] = {
        "json": {JSON_PATH: value},
        "tasmota": {
            "Time": "1970-01-01T00:00:00",
            "DS18B20": {"Id": "01191E8A3E12", "Temperature": value},
            "TempUnit": "C",
        },
        "zigbee2mqtt": {"battery": 97, "linkquality": 120, "temperature": value},
        "shelly": {
            "id": 0,
            "tC": value,
            "tF": None if number is None else round(number * 1.8 + 32, 1),
        },
    }
    return json.dumps(shapes[fmt])


def _nested(path: str, value: object) -> dict[str, object]:
    """The value under `path` (of alternatives `a|b`, the first; a `*` level named as a
    Tasmota sensor model names it)."""
    node: object = value
    for key in reversed(path.split("|", maxsplit=1)[0].split(".")):
        node = {"SI7021" if key == "*" else key: node}
    assert isinstance(node, dict)
    return node


def mqtt_message(output: Output, value: float | None = None) -> str | None:
    """What the output's device publishes (`value`: the number in its own units, when it
    scales); None when it publishes nothing."""
    printed = text(output, value)
    if printed is None:
        return None
    return mqtt_payload(output.format, printed, output.path, output.state)


def serial_line(name: str, output: Output, value: float | None = None) -> str | None:
    """A `NAME VALUE` line as a microcontroller prints it (noise as it comes)."""
    printed = text(output, value)
    if printed is None:
        return None
    return printed if output.fault == "serial-garbage" else f"{name} {printed}"


def w1_slave(output: Output) -> str:
    """The Linux w1_therm file of a DS18B20 showing the output."""
    if output.fault == "ds18b20-reset":
        return W1_RESET
    if output.fault is not None:
        return W1_CRC
    assert output.value is not None
    milli = round(output.value * 1000)
    raw = round(output.value * 16) & 0xFFFF
    return W1_OK.format(b0=raw & 0xFF, b1=raw >> 8, milli=milli)


#: struct formats of the register types a Modbus device holds values in
MODBUS_TYPES = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
    "int64": ">q",
    "uint64": ">Q",
    "float64": ">d",
}


def modbus_words(
    number: float, data_type: str = "int16", word_order: str = "big", scale: float = 1.0
) -> list[int]:
    """The registers a device holds `number` in: `number / scale` as `data_type` (an integer
    type rounds it and, like a real counter, wraps at its range), most significant word first
    unless `word_order` is little."""
    fmt = MODBUS_TYPES[data_type]
    raw = number / scale
    if data_type.startswith(("int", "uint")):
        bits = 8 * struct.calcsize(fmt)
        wrapped = round(raw) % (1 << bits)
        if data_type.startswith("int") and wrapped >= 1 << (bits - 1):
            wrapped -= 1 << bits
        packed = struct.pack(fmt, wrapped)
    else:
        packed = struct.pack(fmt, raw)
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    return words if word_order == "big" else words[::-1]


def modbus_register(output: Output, value: float | None = None) -> int | None:
    """An int16 holding register with the number shown (`value`: in the device's own units,
    when it scales) rounded, two's complement; None: the device answers with
    `MODBUS_DEVICE_FAILURE` (or, for `modbus-timeout`, not at all)."""
    number = shown(output) if value is None else value
    return None if number is None else modbus_words(number, scale=1.0)[0]
