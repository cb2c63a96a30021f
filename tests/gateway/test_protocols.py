"""The codecs decode what the simulated devices encode: every value and every fault a device
can show comes out of `decode(encode(output))` as the gateway must see it — the value, the
fault in the protocol's terms, or a quarantined input — for each protocol and payload shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim import encode
from firmware_sim.scenario import Output
from gateway.config import ModbusPoint, MqttPoint
from gateway.decode import value_path_for
from gateway.protocols import Decoded, Refused
from gateway.protocols.modbus import decode_answer
from gateway.protocols.mqtt import MqttCodec
from gateway.protocols.onewire import decode_w1
from gateway.protocols.serial import SerialCodec

T = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)
FORMATS = ["plain", "json", "tasmota", "zigbee2mqtt", "shelly", "esphome"]
values = st.floats(min_value=-55, max_value=125, allow_nan=False).map(lambda v: round(v, 2))


def output(value=None, fault=None, protocol="mqtt", fmt="plain"):
    return Output(T, 0.0, 0, "t1", protocol, value, fault, fmt)


def mqtt(out):
    path = encode.JSON_PATH if out.format == "json" else None
    point = MqttPoint(type="mqtt", topic="sim/t1", format=out.format, value_path=path)
    codec = MqttCodec({"sim/t1": ("t1", point)})
    printed = encode.text(out)
    if printed is None:
        return None
    return codec.decode("sim/t1", encode.mqtt_payload(out.format, printed).encode())


def serial(out):
    line = encode.serial_line("t1", out)
    if line is None:
        return None
    return SerialCodec(
        r"^(?P<sensor>[\w.-]+)[\s=:,;]+(?P<value>[-+]?\d+(?:\.\d+)?)", {"t1": "t1"}
    ).decode(line)


def modbus(out):
    point = ModbusPoint(type="modbus", device="d", address=0)
    register = encode.modbus_register(out)
    if register is None:
        return decode_answer("t1", point, None, encode.MODBUS_DEVICE_FAILURE)
    return decode_answer("t1", point, [register])


@given(values, st.sampled_from(FORMATS))
def test_a_value_published_in_any_shape_is_read_back(value, fmt):
    assert mqtt(output(value, fmt=fmt)) == Decoded("t1", value=value)


@given(values)
def test_a_value_on_a_serial_line_a_1wire_file_and_a_register_is_read_back(value):
    assert serial(output(value)) == Decoded("t1", value=value)
    w1 = decode_w1("t1", encode.w1_slave(output(value)))
    assert w1.fault is None and w1.value == pytest.approx(value, abs=0.001)
    assert modbus(output(value)) == Decoded("t1", value=float(round(value)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_device_faults_reach_the_gateway_in_each_protocols_terms(fmt):
    # a failed DS18B20 read is NaN (null in JSON) on MQTT: a fault with a quarantine note
    crc = mqtt(output(fault="ds18b20-crc", fmt=fmt))
    assert isinstance(crc, Decoded) and crc.value is None and crc.note is not None
    assert crc.fault in ("not-finite", "unparsable")
    # the 85 °C power-on value and the −127 °C of a loose connector are numbers on the wire;
    # normalising (the probe's quirks, DISCONNECTED_C) makes them faults
    assert mqtt(output(fault="ds18b20-reset", fmt=fmt)) == Decoded("t1", value=85.0)
    assert mqtt(output(fault="disconnected", fmt=fmt)) == Decoded("t1", value=-127.0)
    # a Modbus device's own faults have no MQTT form: the device says nothing
    assert mqtt(output(fault="modbus-exception", fmt=fmt)) is None


def test_1wire_serial_and_modbus_faults():
    assert decode_w1("t1", encode.w1_slave(output(fault="ds18b20-reset"))).fault == (
        "ds18b20-power-on-reset"
    )
    assert decode_w1("t1", encode.w1_slave(output(fault="ds18b20-crc"))).fault == "crc"
    assert decode_w1("t1", None).fault == "sensor-lost"
    noise = serial(output(fault="serial-garbage"))
    assert isinstance(noise, Refused) and noise.reason == "serial-unparsable"
    assert serial(output(fault="ds18b20-crc")) == Decoded("t1", fault="not-finite")
    assert modbus(output(fault="modbus-exception")) == Decoded("t1", fault="modbus-exception-4")
    assert modbus(output(fault="disconnected")) == Decoded("t1", value=-127.0)


def test_a_topic_no_sensor_reads_is_refused_and_patterns_match_in_config_order():
    plain = MqttPoint(type="mqtt", topic="a/+", format="plain")
    codec = MqttCodec(
        {
            "a/exact": ("exact", MqttPoint(type="mqtt", topic="a/exact")),
            "a/+": ("first", plain),
            "#": ("last", plain),
        }
    )
    assert codec.decode("a/exact", b"1.5") == Decoded("exact", value=1.5)
    assert codec.decode("a/other", b"2") == Decoded("first", value=2.0)
    assert codec.decode("b/c", b"3") == Decoded("last", value=3.0)
    assert MqttCodec({}).decode("x", b"1") == Refused(
        "mqtt-unknown-topic", "no sensor reads this topic"
    )


def test_one_device_message_feeds_every_sensor_that_reads_a_value_of_it():
    def on(path, sensor):
        point = MqttPoint(type="mqtt", topic="zigbee2mqtt/cellar", format="zigbee2mqtt",
                          value_path=path)  # fmt: skip
        return (sensor, point)

    codec = MqttCodec([on("temperature", "cellar-t1"), on("humidity", "cellar-h1")])
    assert codec.points == ["zigbee2mqtt/cellar"]
    payload = b'{"battery": 97, "humidity": 81.5, "temperature": 7.25}'
    assert codec.decode_all("zigbee2mqtt/cellar", payload) == [
        Decoded("cellar-t1", value=7.25),
        Decoded("cellar-h1", value=81.5),
    ]
    # each sensor on its own: a payload without humidity is a good temperature and a fault
    partial = codec.decode_all("zigbee2mqtt/cellar", b'{"temperature": 7.0}')
    assert partial[0] == Decoded("cellar-t1", value=7.0)
    assert (partial[1].sensor, partial[1].fault) == ("cellar-h1", "missing-value")


WIDE = {
    "int16": st.integers(-(2**15), 2**15 - 1),
    "uint16": st.integers(0, 2**16 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "uint32": st.integers(0, 2**32 - 1),
    "int64": st.integers(-(2**53), 2**53),  # exact as a float
    "uint64": st.integers(0, 2**53),
    "float32": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "float64": st.floats(-1e300, 1e300, allow_nan=False),
}


@given(st.sampled_from(sorted(WIDE)).flatmap(lambda t: st.tuples(st.just(t), WIDE[t])),
       st.sampled_from(["big", "little"]))  # fmt: skip
def test_a_meters_counter_in_any_register_type_and_word_order_is_read_back(typed, order):
    data_type, number = typed
    point = ModbusPoint(type="modbus", device="d", address=0, data_type=data_type, word_order=order)
    words = encode.modbus_words(number, data_type, order, scale=1.0)
    assert len(words) == {"16": 1, "32": 2, "64": 4}[data_type[-2:]]
    assert decode_answer("m1", point, words) == Decoded("m1", value=float(number))


def test_an_unsigned_counter_wraps_at_its_range_as_a_real_one():
    assert encode.modbus_words(2**32 + 5, "uint32", scale=1.0) == [0, 5]
    assert encode.modbus_words(70000, "uint32", "little", scale=1.0) == [70000 - 65536, 1]


@pytest.mark.parametrize(
    ("fmt", "kind", "payload", "value"),
    [
        ("tasmota", "humidity", {"Time": "t", "SI7021": {"Temperature": 21.3, "Humidity": 45.1}}, 45.1),
        ("tasmota", "humidity", {"Time": "t", "BME280": {"Temperature": 21, "Humidity": 51.0,
                                                         "Pressure": 1013.2}}, 51.0),
        ("tasmota", "humidity", {"Time": "t", "AM2301": {"Temperature": 3.0, "Humidity": 88}}, 88),
        ("tasmota", "pressure", {"BME280": {"Temperature": 21, "Pressure": 1013.2}}, 1013.2),
        ("tasmota", "co2", {"SCD30": {"CarbonDioxide": 1420, "Humidity": 40}}, 1420),
        ("tasmota", "energy", {"ENERGY": {"Total": 1234.567, "Power": 80}}, 1234.567),
        ("tasmota", "power", {"ENERGY": {"Total": 1234.567, "Power": 80}}, 80),
        ("shelly", "energy", {"id": 0, "apower": 12.5, "aenergy": {"total": 98765.4}}, 98765.4),
        ("shelly", "energy", {"id": 0, "total_act_energy": 5551.2}, 5551.2),  # em1data:0
        ("shelly", "power", {"id": 0, "act_power": 230.1}, 230.1),  # em1:0
        ("shelly", "humidity", {"id": 0, "rh": 61.2}, 61.2),
        ("shelly", "water_leak", {"id": 0, "alarm": True, "mute": False}, 1.0),  # flood:0
    ],
)  # fmt: skip
def test_the_common_humidity_co2_and_energy_devices_are_read_out_of_the_box(
    fmt, kind, payload, value
):
    point = MqttPoint(type="mqtt", topic="dev/x", format=fmt)
    path = value_path_for(fmt, kind, None)
    codec = MqttCodec({"dev/x": ("x", point.model_copy(update={"value_path": path}))})
    got = codec.decode("dev/x", json.dumps(payload).encode())
    assert isinstance(got, Decoded) and got.value == value


def test_a_wildcard_path_finds_no_value_where_there_is_none():
    point = MqttPoint(type="mqtt", topic="dev/x", format="tasmota", value_path="*.Humidity")
    got = MqttCodec({"dev/x": ("x", point)}).decode("dev/x", b'{"DS18B20": {"Temperature": 4}}')
    assert isinstance(got, Decoded) and (got.value, got.fault) == (None, "missing-value")
