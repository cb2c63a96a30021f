from gateway.config import SensorConfig
from stream.config import DEFAULT_RULES
from stream.config import ThresholdRule as RuleRow
from stream.table import RuleTable


def sensor(sid, **over):
    return SensorConfig.model_validate(
        {"id": sid, "site": "s", "source": {"type": "mqtt", "topic": f"t/{sid}"}} | over
    )


ROWS = (
    *DEFAULT_RULES,
    RuleRow(id="sprinkler", condition="freezing", tag="sprinkler", below=6, clear=8),
    RuleRow(id="plant", condition="fire", room="plant", above=65, clear=60),
    RuleRow(id="oven", condition="fire", sensor="k1", enabled=False),
    RuleRow(id="plant-b", condition="fire", building="b", above=60, clear=55),
)
SENSORS = {
    ("s", "c1"): sensor("c1", building="a", room="cellar"),
    ("s", "v1"): sensor("v1", building="b", room="valves", tags=["pipes", "sprinkler"]),
    ("s", "p1"): sensor("p1", building="b", room="plant"),
    ("s", "k1"): sensor("k1", building="b", room="plant"),
    ("s", "h1"): sensor("h1", kind="humidity"),
}


def chosen(sensor_id, kind="temperature", conditions=("freezing", "fire")):
    rows = RuleTable(ROWS, SENSORS).rules_for("s", sensor_id, kind)
    return {r.condition: r.id for r in rows if r.condition in conditions}


def test_every_temperature_sensor_gets_one_row_per_sensor_condition():
    assert chosen("c1", conditions=("heat_rise", "sensor_offline", "sensor_fault")) == {
        "heat_rise": "heat-rise",
        "sensor_offline": "sensor-offline",
        "sensor_fault": "sensor-fault",
    }


def test_defaults_apply_where_nothing_more_specific_matches():
    assert chosen("c1") == {"freezing": "freezing", "fire": "fire"}


def test_a_tag_row_beats_the_default():
    assert chosen("v1") == {"freezing": "sprinkler", "fire": "plant-b"}


def test_room_beats_building_and_sensor_beats_room():
    assert chosen("p1") == {"freezing": "freezing", "fire": "plant"}
    assert chosen("k1") == {"freezing": "freezing"}  # the disabled row wins and switches fire off


def test_temperature_rules_do_not_apply_to_another_kind_but_offline_and_fault_do():
    assert chosen("h1", kind="humidity") == {}
    assert chosen("h1", kind="humidity", conditions=("sensor_offline", "sensor_fault")) == {
        "sensor_offline": "sensor-offline",
        "sensor_fault": "sensor-fault",
    }


def test_gateway_rows_match_on_site_and_gateway():
    from stream.config import GatewayOfflineRule

    rows = (
        *DEFAULT_RULES,
        GatewayOfflineRule(id="slow", condition="gateway_offline", gateway="g2", after=3600),
    )
    table = RuleTable(rows, SENSORS)
    assert table.gateway_rule("s", "g1").id == "gateway-offline"
    assert table.gateway_rule("s", "g2").id == "slow"


def test_unknown_sensors_still_get_the_site_wide_rules():
    assert chosen("new-sensor") == {"freezing": "freezing", "fire": "fire"}
