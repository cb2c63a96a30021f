from pathlib import Path

import pytest

from gateway.configfile import ConfigError
from husvakt.config import load_config

DEMO = Path(__file__).resolve().parents[2] / "husvakt" / "data" / "demo.yaml"
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example-school.yaml"

MINIMAL = """\
sites:
  - id: skolan
    name: Skolan
    buildings:
      - id: a
        rooms: [{id: cellar}]
gateway:
  id: pi
  site: skolan
  mqtt_brokers: {local: {}}
sensors:
  - id: t1
    building: a
    room: cellar
    source: {type: mqtt, topic: t/1}
teams: [{id: fm, name: FM}]
routing:
  - {id: all, team: fm}
"""


def write(tmp_path, text):
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path):
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize("path", [DEMO, EXAMPLE], ids=["demo", "example-school"])
def test_shipped_configs_are_valid(path):
    config = load_config(path)
    assert config.sensors
    assert config.cases.sqlite.is_absolute()


def test_a_minimal_config_gets_the_default_rules(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert {r.id for r in config.rules} == {
        "freezing",
        "fire",
        "heat-rise",
        "sensor-offline",
        "sensor-fault",
        "gateway-offline",
    }
    freezing = next(r for r in config.rules if r.id == "freezing")
    assert (freezing.below, freezing.critical, freezing.clear, freezing.hold) == (
        5.0,
        2.0,
        7.0,
        600.0,
    )
    assert config.sensor_index()[("skolan", "t1")].site == "skolan"


def test_a_wrong_field_is_reported_with_file_line_and_field(tmp_path):
    path = write(
        tmp_path,
        MINIMAL.replace(
            "source: {type: mqtt, topic: t/1}", "source: {type: mqtt, topic: t/1, qos: 3}"
        ),
    )
    assert problems(path) == [
        f"{path}:15:38: sensors[0].source.qos: Extra inputs are not permitted"
    ]


def test_every_problem_is_reported_at_once(tmp_path):
    text = (
        MINIMAL.replace("site: skolan\n  mqtt", "site: skolan\n  queue_size: -1\n  mqtt")
        .replace("    room: cellar\n", "    room: attic\n")
        .replace("{id: all, team: fm}", "{id: all, team: fm, priority: P9}")
    )
    found = problems(write(tmp_path, text))
    assert len(found) == 2, found  # field errors first; cross-references need valid fields
    assert ":10:3: gateway.queue_size: Input should be greater than or equal to 1" in found[0]
    assert "routing[0].priority" in found[1]


def test_cross_references_point_at_the_offending_field(tmp_path):
    text = MINIMAL.replace("room: cellar\n    source", "room: attic\n    source").replace(
        "team: fm}", "team: janitors}"
    )
    found = problems(write(tmp_path, text))
    assert any(":14:5: sensors[0].room: building 'a' has no room 'attic'" in p for p in found), (
        found
    )
    assert any(":18:15: routing[0].team: no team 'janitors' in 'teams'" in p for p in found), found


def test_yaml_syntax_errors_name_the_line(tmp_path):
    found = problems(
        write(
            tmp_path, MINIMAL.replace("teams: [{id: fm, name: FM}]", "teams: [{id: fm, name: FM}")
        )
    )
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'site.yaml'}:") and "YAML syntax" in found[0]


def test_equally_specific_rules_for_one_sensor_are_ambiguous(tmp_path):
    text = MINIMAL + (
        "rules:\n"
        "  - {id: cold-a, condition: freezing, building: a, below: 5, clear: 7}\n"
        "  - {id: cold-b, condition: freezing, room: cellar, below: 4, clear: 6}\n"
        "  - {id: cold-c, condition: freezing, room: cellar, below: 3, clear: 6}\n"
    )
    found = problems(write(tmp_path, text))
    assert len(found) == 1
    assert "rules[1] (cold-b), rules[2] (cold-c) are equally specific for sensor 't1'" in found[0]
    assert ":22:5: rules[2]" in found[0]


def test_a_routing_table_needs_a_fallback(tmp_path):
    found = problems(
        write(
            tmp_path,
            MINIMAL.replace("{id: all, team: fm}", "{id: fire, condition: fire, team: fm}"),
        )
    )
    assert any("routing: the routing table needs a fallback row" in p for p in found), found


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "{id: x, condition: freezing, below: 5, clear: 4}",
            "'clear' (4.0) must be above 'below' (5.0)",
        ),
        (
            "{id: x, condition: fire, above: 50, clear: 55}",
            "'clear' (55.0) must be below 'above' (50.0)",
        ),
        (
            "{id: x, condition: fire, above: 50, below: 5, clear: 45}",
            "give exactly one of 'below' or 'above'",
        ),
        ("{id: x, condition: fire, above: 50}", "give 'clear'"),
        ("{id: x, condition: freezing, below: 5, clear: 7, hold: 10 minutes}", "is not a duration"),
    ],
)
def test_inconsistent_rule_levels_are_explained(tmp_path, rule, message):
    found = problems(write(tmp_path, MINIMAL + f"rules:\n  - {rule}\n"))
    assert len(found) == 1 and message in found[0], found
    assert ":20:" in found[0]


def test_a_missing_file_is_a_clear_error(tmp_path):
    found = problems(tmp_path / "nope.yaml")
    assert "cannot read" in found[0]


def test_identical_routing_rows_are_ambiguous(tmp_path):
    text = MINIMAL.replace(
        "  - {id: all, team: fm}\n",
        "  - {id: all, team: fm}\n  - {id: night, hours: '18:00-07:00', team: fm}\n"
        "  - {id: night2, hours: '18:00-07:00', team: fm}\n",
    )
    found = problems(write(tmp_path, text))
    assert len(found) == 1
    assert "routing[2]: matches exactly what routing[1] matches (ambiguous)" in found[0]


def test_a_bad_time_window_or_zone_is_explained(tmp_path):
    text = MINIMAL.replace(
        "{id: all, team: fm}", "{id: all, team: fm, hours: '25:00-07:00'}"
    ).replace("    name: Skolan\n", "    name: Skolan\n    timezone: Mars/Olympus\n")
    found = problems(write(tmp_path, text))
    assert any("unknown time zone 'Mars/Olympus'" in p for p in found), found
    assert any("'25:00-07:00' is not a time window" in p for p in found), found


@pytest.mark.parametrize(
    ("topic", "message"),
    [("t/a+", "'+' and '#' must fill a whole level"), ("t/#/x", "'#' may only be the last level")],
)
def test_bad_topic_filters_are_explained(tmp_path, topic, message):
    found = problems(write(tmp_path, MINIMAL.replace("topic: t/1", f"topic: '{topic}'")))
    assert len(found) == 1 and message in found[0], found


def test_two_sensors_reading_the_same_value_of_one_topic_is_an_error(tmp_path):
    text = MINIMAL.replace("teams:", "  - {id: t2, source: {type: mqtt, topic: t/1}}\nteams:")
    found = problems(write(tmp_path, text))
    message = "sensors[1].source.topic: sensors[0] already reads the same value of 't/1'"
    assert any(message in p for p in found), found


def test_a_table_that_tunes_frost_keeps_the_default_rows_of_every_other_condition(tmp_path):
    rules = "rules:\n  - {id: frost, condition: freezing, below: 6, clear: 8, hold: 5m}\n"
    config = load_config(write(tmp_path, MINIMAL + rules))
    assert [r.id for r in config.rules] == [
        "frost",
        "fire",
        "heat-rise",
        "sensor-offline",
        "sensor-fault",
        "gateway-offline",
    ]


def test_a_broken_rule_row_is_reported_with_its_line_and_field(tmp_path):
    rules = (
        "rules:\n"
        "  - {id: rise, condition: heat_rise, rate: 5, clear_rate: 6}\n"
        "  - {id: quiet, condition: sensor_offline, after: soon}\n"
        "  - {id: gw, condition: gateway_offline, room: cellar}\n"
    )
    text = "\n".join(problems(write(tmp_path, MINIMAL + rules)))
    assert "'clear_rate' (6.0) must be below 'rate' (5.0)" in text
    assert "'soon' is not a duration" in text
    assert "matches on site and gateway only, not room" in text


def test_a_climate_sensors_message_feeds_a_thermometer_and_a_hygrometer(tmp_path):
    from gateway.clock import SystemClock
    from gateway.quarantine import Quarantine
    from gateway.service import build_sources

    both = (
        "  - {id: t2, source: {type: mqtt, topic: z/climate, format: zigbee2mqtt}}\n"
        "  - {id: h2, kind: humidity, unit: '%', "
        "source: {type: mqtt, topic: z/climate, format: zigbee2mqtt}}\nteams:"
    )
    config = load_config(write(tmp_path, MINIMAL.replace("teams:", both)))
    (source, *_) = [
        s
        for s in build_sources(
            config.gateway, config.sensors, clock=SystemClock(), quarantine=Quarantine()
        )
        if s.name.startswith("mqtt")
    ]
    payload = b'{"temperature": 6.5, "humidity": 82}'
    decoded = source._codec.decode_all("z/climate", payload)
    assert [(d.sensor, d.value) for d in decoded] == [("t2", 6.5), ("h2", 82.0)]


GATEWAY_ONLY = """\
sites:
  - {id: skolan, name: Skolan, timezone: Europe/Stockholm}
gateway:
  id: pi
  site: skolan
  mqtt_brokers:
    lan: {host: 127.0.0.1, port: 8883, password_file: secrets/lan.pw,
          tls: {ca_file: tls/ca.pem, cert_file: tls/pi.pem, key_file: /etc/husvakt/pi.key}}
  uplink: {host: 127.0.0.1, password_file: secrets/uplink.pw}
  outbox: {path: data/outbox.db}
  quarantine: data/quarantine.db
  onewire: {base: sys-w1}
sensors:
  - {id: t1, source: {type: mqtt, topic: t/1}}
"""


def test_a_gateway_alone_needs_no_teams_or_routing_and_every_path_is_relative_to_its_file(
    tmp_path,
):
    path = tmp_path / "pi" / "husvakt.yaml"
    path.parent.mkdir()
    path.write_text(GATEWAY_ONLY, encoding="utf-8")
    config = load_config(path, cases=False)
    gw, here = config.gateway, path.parent
    assert gw.uplink.password_file == here / "secrets" / "uplink.pw"
    lan = gw.mqtt_brokers["lan"]
    assert lan.password_file == here / "secrets" / "lan.pw"
    assert (lan.tls.ca_file, lan.tls.cert_file) == (here / "tls/ca.pem", here / "tls/pi.pem")
    assert lan.tls.key_file == Path("/etc/husvakt/pi.key")  # absolute stays as it is
    assert (gw.outbox.path, gw.quarantine) == (here / "data/outbox.db", here / "data/quarantine.db")
    assert gw.onewire.base == here / "sys-w1"
    # a command that opens cases still needs them, and says a gateway's file is fine without
    with pytest.raises(ConfigError, match="a file for a gateway alone needs none"):
        load_config(path)


def test_husvakt_config_check_accepts_a_gateway_alone(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "pi.yaml"
    path.write_text(GATEWAY_ONLY, encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "husvakt.cli", "config", "check", str(path)],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "cases: none here — a file for `husvakt gateway` alone" in out.stdout


DYNAMICS = """\
sinks:
  - id: dynamics
    type: dynamics
    url: https://contoso.crm4.dynamics.com
    tenant: contoso.onmicrosoft.com
    client_id: 0b7c56a4-5d2e-4f1b-9a61-2f7f3c1d9e01
    client_secret_file: dynamics.secret
    mapping:
      accounts: {nowhere: 5e1f3c0a-0000-4000-8000-000000000001}
      subjects: {no-such-condition: 5e1f3c0a-0000-4000-8000-000000000002}
  - id: dynamics
    type: webhook
    url: ftp://x
"""


def test_a_sink_mapping_naming_what_the_config_lacks_is_pointed_at(tmp_path):
    found = problems(write(tmp_path, MINIMAL + DYNAMICS))
    text = "\n".join(found)
    assert "site.yaml:31:5: sinks[1].url: a webhook url starts with http" in text, text


def test_a_dynamics_mapping_is_checked_against_sites_and_conditions(tmp_path):
    found = problems(
        write(
            tmp_path, MINIMAL + DYNAMICS.split("  - id: dynamics\n    type: webhook", maxsplit=1)[0]
        )
    )
    text = "\n".join(found)
    assert "no site 'nowhere' in 'sites'" in text, text
    assert "no rule raises the condition 'no-such-condition'" in text, text
    assert "site 'skolan' has no account" in text, text
    assert all(p.startswith(str(tmp_path / "site.yaml")) for p in found), found


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('    client_id: "0b7c56a4-5d2e-4f1b-9a61-2f7f3c1d9e01\\n"', "client_id"),
        ('    client_id: "0b7c56a4-5d2e-4f1b-9a61-2f7f3c1d9e01\\u0000"', "client_id"),
        ('    key: "hv_husvaktcaseid\\n"', "key"),
        ('    key: "hv_x\') or 1=1 --"', "key"),
        ('    tenant: "../../common"', "tenant"),
        ('    tenant: "\\ud800"', "tenant"),
        ("    url: http://contoso.crm4.dynamics.com", "url"),
        ('    url: "https://\\u0000"', "url"),
        ("    batch: 1000000000", "batch"),
        ("    every: -1", "every"),
        ("    poll: 1e400", "poll"),
        ("    mapping: {users: {not-a-guid: eva}}", "mapping"),
        ("    authority: https://login.example/t?x=1", "authority"),
    ],
)
def test_a_hostile_dynamics_setting_is_a_config_error_at_its_line(tmp_path, line, field):
    sink = DYNAMICS.split("  - id: dynamics\n    type: webhook", maxsplit=1)[0]
    good = "\n".join(
        ln
        for ln in sink.splitlines()
        if not ln.startswith(("    mapping:", "      accounts", "      subjects"))
    )
    good += "\n    mapping: {default_account: 5e1f3c0a-0000-4000-8000-000000000001}\n"
    name = line.strip().split(":", 1)[0]
    lines = [ln for ln in good.splitlines() if not ln.strip().startswith(f"{name}:")]
    if name == "mapping":
        lines = [ln for ln in lines if not ln.startswith("    mapping:")]
    found = problems(write(tmp_path, MINIMAL + "\n".join([*lines, line]) + "\n"))
    assert any(f"sinks[0].{field}" in p for p in found), found


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "http://",
        "http://hook.example/a b",
        "http://hook.example/\\u0000",
        "http://u:p@hook.example/",
        "https://\\ud800",
    ],
)
def test_a_webhook_sink_url_that_could_not_be_sent_to_is_a_config_error(tmp_path, url):
    text = MINIMAL + f'sinks:\n  - {{id: feed, type: webhook, url: "{url}"}}\n'
    found = problems(write(tmp_path, text))
    assert any("sinks[0].url: " in p and "webhook url" in p for p in found), found


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("{max_bytes: -1}", "max_bytes"),
        ("{max_bytes: 1e400}", "max_bytes"),
        ("{max_bytes: 10000000000000}", "max_bytes"),
        ("{per_case: 0}", "per_case"),
        ('{per_case: "\\u0000"}', "per_case"),
        ("{max_pixels: 1000000000000}", "max_pixels"),
        ("{thumbnail: 1}", "thumbnail"),
        ("[1, 2]", "photos"),
    ],
)
def test_a_hostile_photo_limit_is_a_config_error_at_its_line(tmp_path, value, field):
    found = problems(write(tmp_path, MINIMAL + f"cases:\n  photos: {value}\n"))
    assert any("cases.photos" in p and field in p for p in found), found
    assert all(p.startswith(str(tmp_path)) for p in found), found
