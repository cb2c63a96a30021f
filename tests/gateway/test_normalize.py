import json
import math
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from gateway.config import SensorConfig
from gateway.models import Reading
from gateway.normalize import Sample, normalize
from gateway.wire import encode_reading

TS = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)


def sensor(**over):
    base = {"id": "t1", "source": {"type": "mqtt", "topic": "a/b"}}
    return SensorConfig.model_validate(base | over)


def norm(value=None, fault=None, **over):
    return normalize(Sample("t1", TS, value, fault), sensor(**over), site="s", gateway="g", seq=7)


def test_a_good_value_becomes_a_good_reading_with_its_context():
    r = norm(3.25)
    assert (r.site, r.gateway, r.sensor, r.kind, r.value, r.unit, r.ts, r.seq, r.quality) == (
        "s",
        "g",
        "t1",
        "temperature",
        3.25,
        "°C",
        TS,
        7,
        "good",
    )
    assert json.loads(encode_reading(r)) == {
        "site": "s",
        "gateway": "g",
        "sensor": "t1",
        "kind": "temperature",
        "value": 3.25,
        "unit": "°C",
        "ts": "2026-01-15T02:00:00Z",
        "seq": 7,
        "quality": "good",
    }


def test_scale_and_offset_apply_before_the_unit():
    assert norm(215, scale=0.1).value == pytest.approx(21.5)
    assert norm(10, offset=-0.5).value == pytest.approx(9.5)


@pytest.mark.parametrize(("value", "unit", "celsius"), [(41.0, "°F", 5.0), (278.15, "K", 5.0)])
def test_temperatures_are_converted_to_celsius(value, unit, celsius):
    r = norm(value, unit=unit)
    assert r.value == pytest.approx(celsius)
    assert r.unit == "°C"


@pytest.mark.parametrize(
    ("value", "fault"),
    [
        (-127.0, "disconnected"),
        (130.0, "out-of-range"),
        (-60.0, "out-of-range"),
        (math.nan, "not-finite"),
        (math.inf, "not-finite"),
        (None, "not-finite"),
    ],
)
def test_impossible_temperatures_become_fault_readings(value, fault):
    r = norm(value)
    assert r.quality == "fault"
    assert r.fault == fault
    assert math.isfinite(r.value)


def test_a_fault_from_the_source_is_kept():
    r = norm(fault="modbus-exception-4")
    assert (r.quality, r.fault, r.value) == ("fault", "modbus-exception-4", 0.0)
    assert json.loads(encode_reading(r))["fault"] == "modbus-exception-4"


def test_the_reading_contract_rejects_what_it_must():
    good = json.loads(encode_reading(norm(1.0)))
    with pytest.raises(ValidationError):
        Reading.model_validate(good | {"value": math.nan})
    with pytest.raises(ValidationError):
        Reading.model_validate(good | {"ts": "2026-01-15T02:00:00"})  # no zone
    with pytest.raises(ValidationError):
        Reading.model_validate(good | {"sensor": "Basement T1"})
    with pytest.raises(ValidationError):
        Reading.model_validate(good | {"quality": "fault"})  # fault without a reason
    assert Reading.model_validate_json(Reading.model_validate(good).model_dump_json()) == norm(1.0)


@pytest.mark.parametrize(
    ("value", "fault"),
    [
        (85.0, "ds18b20-power-on-reset"),
        (127.94, "ds18b20-insufficient-power"),
        (84.9, None),
        (21.0, None),
    ],
)
def test_a_node_behind_a_ds18b20_passes_its_glitch_values_as_faults(value, fault):
    r = norm(value, probe="ds18b20")
    assert r.fault == fault
    assert r.quality == ("fault" if fault else "good")


def test_without_the_probe_known_85_is_a_temperature():
    assert norm(85.0).quality == "good"


def test_a_normalised_reading_is_the_validated_model_and_any_zone_becomes_utc():
    from datetime import timedelta, timezone

    good, fault = norm(3.25), norm(fault="crc-error")
    for r in (good, fault):
        assert r == Reading.model_validate(r.model_dump())
        assert r.model_fields_set == Reading.model_validate(r.model_dump()).model_fields_set
    stockholm = TS.astimezone(timezone(timedelta(hours=1)))
    r = normalize(Sample("t1", stockholm, 3.25), sensor(), site="s", gateway="g", seq=7)
    assert r.ts == TS and r.ts.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "state", "expected"),
    [
        (1.0, True, ("good", 1.0, None)),  # {"water_leak": true}
        (0.0, True, ("good", 0.0, None)),  # ESPHome's OFF
        (1.0, False, ("good", 1.0, None)),  # a Modbus coil's 1
        (0.5, False, ("fault", 0.5, "not-a-state")),
        (7.0, False, ("fault", 7.0, "not-a-state")),
    ],
)
def test_an_on_off_sensor_takes_states_and_only_states(value, state, expected):
    leak = sensor(kind="water_leak", unit="bool", scale=10.0)  # a state is never scaled
    r = normalize(Sample("t1", TS, value, state=state), leak, site="s", gateway="g", seq=1)
    assert (r.quality, r.value, r.fault) == expected
    assert r.unit == "bool"


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_a_state_from_a_thermometer_is_a_fault_never_a_temperature(value):
    r = normalize(Sample("t1", TS, value, state=True), sensor(), site="s", gateway="g", seq=1)
    assert (r.quality, r.fault) == ("fault", "not-a-number")  # `false` is not 0 °C: no frost
