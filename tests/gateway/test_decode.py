import re

import pytest

from gateway.decode import decode_mqtt, decode_registers, parse_line
from gateway.errors import DecodeError


@pytest.mark.parametrize(
    ("payload", "fmt", "path", "expected"),
    [
        (b"21.5", "plain", None, 21.5),
        (b" -3.25\n", "plain", None, -3.25),
        (b'{"temperature": 4.5}', "json", "temperature", 4.5),
        (b'{"DS18B20": {"Temperature": 2.1}}', "json", "DS18B20.Temperature", 2.1),
        (b'{"temps": [1.5, 2.5]}', "json", "temps.1", 2.5),
        (b'{"t": "7.25"}', "json", "t", 7.25),
    ],
)
def test_mqtt_payloads_decode_to_their_value(payload, fmt, path, expected):
    assert decode_mqtt(payload, fmt, path) == expected


@pytest.mark.parametrize(
    ("payload", "fmt", "path", "reason"),
    [
        (b"NaN", "plain", None, "not-finite"),
        (b"inf", "plain", None, "not-finite"),
        (b"1e309", "plain", None, "not-finite"),
        (b'{"temperature": NaN}', "json", "temperature", "not-finite"),
        (b'{"temperature": Infinity}', "json", "temperature", "not-finite"),
        (b'{"temperature": 1e309}', "json", "temperature", "not-finite"),
        (b"warm", "plain", None, "unparsable"),
        (b"\xff\xfe", "plain", None, "unparsable"),
        (b'{"temperature": 4.5', "json", "temperature", "unparsable"),
        (b'{"humidity": 40}', "json", "temperature", "missing-value"),
        (b'{"temperature": true}', "json", "temperature", "unparsable"),
        (b'{"temperature": null}', "json", "temperature", "unparsable"),
    ],
)
def test_unusable_mqtt_payloads_name_their_fault(payload, fmt, path, reason):
    with pytest.raises(DecodeError) as caught:
        decode_mqtt(payload, fmt, path)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("registers", "data_type", "order", "expected"),
    [
        ([215], "int16", "big", 215),
        ([0xFFDD], "int16", "big", -35),
        ([0xFFDD], "uint16", "big", 0xFFDD),
        ([0x0001, 0x0000], "int32", "big", 65536),
        ([0x0000, 0x0001], "int32", "little", 65536),
        ([0xFFFF, 0xFFFE], "int32", "big", -2),
        ([0x41A4, 0x0000], "float32", "big", 20.5),
        ([0x0000, 0x41A4], "float32", "little", 20.5),
    ],
)
def test_registers_decode_per_data_type_and_word_order(registers, data_type, order, expected):
    assert decode_registers(registers, data_type, order) == expected


def test_a_short_register_read_is_a_fault():
    with pytest.raises(DecodeError) as caught:
        decode_registers([1], "float32")
    assert caught.value.reason == "short-read"


def test_nan_in_float32_registers_is_a_fault():
    with pytest.raises(DecodeError) as caught:
        decode_registers([0x7FC0, 0x0000], "float32")
    assert caught.value.reason == "not-finite"


PATTERN = re.compile(r"^(?P<sensor>[\w.-]+)[\s=:,;]+(?P<value>[-+]?\d+(?:\.\d+)?)")


@pytest.mark.parametrize(
    ("line", "expected"),
    [("room204-t1 21.50", ("room204-t1", 21.5)), ("T1=-3.2", ("T1", -3.2)), ("a:7", ("a", 7.0))],
)
def test_serial_lines_give_sensor_and_value(line, expected):
    assert parse_line(line, PATTERN) == expected


@pytest.mark.parametrize("line", ["", "\x00\x7f#@!", "T1 = warm", "ERR"])
def test_garbage_serial_lines_are_unparsable(line):
    with pytest.raises(DecodeError) as caught:
        parse_line(line, PATTERN)
    assert caught.value.reason == "unparsable"


def test_a_one_sensor_pattern_gives_no_name():
    assert parse_line("+21.0", re.compile(r"(?P<value>[-+]?\d+\.\d+)")) == (None, 21.0)
