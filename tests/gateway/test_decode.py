import re

import pytest

from gateway.decode import (
    decode_mqtt,
    decode_mqtt_value,
    decode_registers,
    parse_line,
    parse_number,
    parse_w1_slave,
    value_path_for,
)
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
        # hostile payloads: each is a fault reading of its sensor, never a crash
        (b"[" * 60_000, "json", "temperature", "unparsable"),
        (b'{"temperature": 1' + b"0" * 5000 + b"}", "json", "temperature", "unparsable"),
        (b"1" * 5000, "plain", None, "unparsable"),
        (b"2.5e1", "plain", None, "unparsable"),
        (b'{"temperature": "\\ud800"}', "json", "temperature", "unparsable"),
        (b'{"temperature": "21\\u0000"}', "json", "temperature", "unparsable"),
        (b" " * 70_000, "plain", None, "too-large"),
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


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("T1=1e309", "not-finite"),
        ("T1=inf", "not-finite"),
        ("T1=-Infinity", "not-finite"),
        ("T1=nan", "not-finite"),
        ("T1=2.5e1", "unparsable"),  # not read as 2.5
        ("T1=21.5.3", "unparsable"),  # not read as 21.5
        ("T1=warm", "unparsable"),
    ],
)
def test_a_line_that_names_its_sensor_but_no_plain_number_is_that_sensors_fault(line, reason):
    with pytest.raises(DecodeError) as caught:
        parse_line(line, PATTERN)
    assert (caught.value.reason, caught.value.sensor) == (reason, "T1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("21.5", 21.5), ("-3", -3.0), ("+0.25", 0.25), (".5", 0.5), ("7.", 7.0), (" 4 ", 4.0)],
)
def test_one_number_parser_reads_plain_decimals(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("nan", "not-finite"),
        ("-inf", "not-finite"),
        ("Infinity", "not-finite"),
        ("1e309", "not-finite"),
        ("1e3", "unparsable"),
        ("0x10", "unparsable"),
        ("1_000", "unparsable"),
        ("", "unparsable"),
        ("9" * 33, "unparsable"),
        ("٣", "unparsable"),  # an Arabic-Indic digit: float() would take it
    ],
)
def test_one_number_parser_makes_everything_else_a_fault(text, reason):
    with pytest.raises(DecodeError) as caught:
        parse_number(text)
    assert caught.value.reason == reason


def test_a_one_sensor_pattern_gives_no_name():
    assert parse_line("+21.0", re.compile(r"(?P<value>[-+]?\d+\.\d+)")) == (None, 21.0)


@pytest.mark.parametrize(
    ("fmt", "payload", "expected"),
    [
        (
            "tasmota",
            b'{"Time":"2026-01-15T02:00:00","DS18B20":{"Id":"01191E8A3E12","Temperature":4.3},"TempUnit":"C"}',
            4.3,
        ),
        (
            "tasmota",
            b'{"Time":"2026-01-15T02:00:00","DS18B20":{"Temperature":41.0},"TempUnit":"F"}',
            5.0,
        ),
        (
            "zigbee2mqtt",
            b'{"battery":97,"humidity":41.2,"linkquality":120,"temperature":3.9,"voltage":2995}',
            3.9,
        ),
        ("shelly", b'{"id":0,"tC":21.8,"tF":71.2}', 21.8),
        ("esphome", b"19.75", 19.75),
    ],
)
def test_device_payload_presets(fmt, payload, expected):
    assert decode_mqtt(payload, fmt, None) == pytest.approx(expected)


W1_GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (W1_GOOD, 23.125),
        ("e0 ff 4b 46 7f ff 10 10 2b : crc=2b YES\ne0 ff 4b 46 7f ff 10 10 2b t=-2000\n", -2.0),
        # a real 85 °C: the count-remain byte is not the power-on value
        ("50 05 4b 46 7f ff 10 10 b3 : crc=b3 YES\n50 05 4b 46 7f ff 10 10 b3 t=85000\n", 85.0),
    ],
)
def test_w1_slave_values(text, expected):
    assert parse_w1_slave(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("72 01 4b 46 7f ff 0e 10 57 : crc=12 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", "crc"),
        (
            "00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n",
            "all-zero-scratchpad",
        ),
        (
            "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n",
            "ds18b20-power-on-reset",
        ),
        (
            "ff 07 4b 46 7f ff 01 10 d8 : crc=d8 YES\nff 07 4b 46 7f ff 01 10 d8 t=127937\n",
            "ds18b20-insufficient-power",
        ),
        ("", "unparsable"),
        ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", "unparsable"),
    ],
)
def test_w1_slave_faults(text, reason):
    with pytest.raises(DecodeError) as caught:
        parse_w1_slave(text)
    assert caught.value.reason == reason


def test_durations_read_the_same_in_every_text():
    from gateway.config import format_duration, parse_duration

    assert [format_duration(s) for s in (0, 30, 600, 3600, 5400, 7200, 9000, 86_400 * 3)] == [
        "0 min",
        "0 min",
        "10 min",
        "60 min",
        "90 min",
        "2 h",
        "2 h 30 min",
        "3 d",
    ]
    assert format_duration(parse_duration("1h30m")) == "90 min"  # type: ignore[arg-type]
    assert format_duration(3 * 86_400 + 4 * 3600) == "3 d 4 h"


@pytest.mark.parametrize(
    ("payload", "fmt", "path", "expected"),
    [
        (b'{"battery": 97, "linkquality": 120, "water_leak": true}', "zigbee2mqtt", "water_leak",
         (1.0, True)),
        (b'{"contact": false}', "zigbee2mqtt", "contact", (0.0, True)),
        (b'{"id": 0, "state": "ON"}', "shelly", "state", (1.0, True)),
        (b"ON", "esphome", None, (1.0, True)),
        (b"off\n", "plain", None, (0.0, True)),
        (b"21.5", "esphome", None, (21.5, False)),
        (b'{"temperature": 4.5}', "zigbee2mqtt", None, (4.5, False)),
    ],
)  # fmt: skip
def test_on_off_states_are_decoded_as_states(payload, fmt, path, expected):
    assert decode_mqtt_value(payload, fmt, path) == expected


def test_where_a_number_is_expected_a_state_is_unparsable():
    with pytest.raises(DecodeError) as caught:
        decode_mqtt(b"ON", "esphome", None)
    assert caught.value.reason == "unparsable"


@pytest.mark.parametrize(
    ("fmt", "kind", "given", "expected"),
    [
        ("zigbee2mqtt", "humidity", None, "humidity"),
        ("zigbee2mqtt", "water_leak", None, "water_leak"),
        ("zigbee2mqtt", "temperature", None, "temperature"),
        ("shelly", "humidity", None, "rh"),
        ("shelly", "water_leak", None, "alarm"),
        ("shelly", "temperature", None, "tC"),
        ("tasmota", "temperature", None, "DS18B20.Temperature"),  # the shape's default
        ("zigbee2mqtt", "humidity", "hum", "hum"),  # the config's own path wins
        ("plain", "humidity", None, None),
    ],
)
def test_a_sensor_without_a_value_path_reads_where_its_device_puts_its_kind(
    fmt, kind, given, expected
):
    assert value_path_for(fmt, kind, given) == expected
