from datetime import timedelta

import pytest

from casebridge.config import RouteRow
from casebridge.enrich import draft_case
from casebridge.models import ReadingPoint
from gateway.config import SensorConfig, SiteConfig
from tests.factories import T0, make_alarm

SITE = SiteConfig.model_validate(
    {
        "id": "skolan",
        "name": "Skolan",
        "address": "Vägen 1",
        "access_notes": "Key box K3",
        "contact": "Eva",
        "buildings": [
            {"id": "a", "name": "Hus A", "rooms": [{"id": "cellar", "name": "Cellar", "floor": -1}]}
        ],
    }
)
SENSOR = SensorConfig.model_validate(
    {
        "id": "t1",
        "building": "a",
        "room": "cellar",
        "asset": "Water main",
        "source": {"type": "mqtt", "topic": "x"},
    }
)
ALARM = make_alarm(site="skolan", minute=15, started_at=T0 + timedelta(minutes=5))
ROUTE = RouteRow(id="frost", condition="freezing", team="fm", priority="P2")


def test_a_case_draft_says_what_where_and_who():
    d = draft_case(ALARM, site=SITE, sensor=SENSOR, route=ROUTE, now=T0, sla=3600)
    assert d.title == "Freezing risk — Cellar, Skolan (t1)"
    assert (d.team, d.priority, d.route) == ("fm", "P2", "frost")
    assert (d.site_name, d.address, d.building_name, d.room_name, d.floor) == (
        "Skolan",
        "Vägen 1",
        "Hus A",
        "Cellar",
        "-1",
    )
    assert (d.asset, d.access_notes, d.contact) == ("Water main", "Key box K3", "Eva")
    assert d.sla_due_at == T0 + timedelta(hours=1)


def test_the_draft_shows_recent_readings_and_the_extremes_since_the_condition_began():
    recent = [
        ReadingPoint(ts=T0 + timedelta(minutes=m), value=v)
        for m, v in [(0, 6.0), (4, 5.5), (5, 4.9), (10, 4.1), (15, 4.6), (20, 3.0)]
    ]
    d = draft_case(ALARM, site=SITE, sensor=SENSOR, route=ROUTE, now=T0, recent=recent)
    assert [p.value for p in d.recent] == [6.0, 5.5, 4.9, 4.1, 4.6]  # up to the alarm, not after
    assert (d.min_since_start, d.max_since_start) == (4.1, 4.9)


def test_a_sensor_missing_from_the_registry_still_gets_a_case():
    d = draft_case(ALARM, site=None, sensor=None, route=ROUTE, now=T0)
    assert d.title == "Freezing risk — skolan (t1)"
    assert d.site_name == "skolan" and d.room is None and d.sla_due_at is None


@pytest.mark.parametrize(
    ("alarm", "unit", "text"),
    [
        ({"value": 3.0, "threshold": 5.0}, "°C", "freezing raised warning at 3.0 (threshold 5)"),
        ({"value": 3.0, "threshold": 5.0}, None, "freezing raised warning at 3.0 (threshold 5)"),
        (
            {"condition": "damp", "value": 79.0, "threshold": 75.0},
            "%",
            "damp raised warning at 79.0 % (threshold 75 %)",
        ),
        (
            {"condition": "damp", "state": "cleared", "value": 69.7, "threshold": 70.0},
            "%",
            "damp cleared at 69.7 % (clear level 70 %)",
        ),
        ({"condition": "leak", "value": 1.0, "threshold": 0.5}, "bool", "leak raised warning (on)"),
        (
            {"condition": "leak", "state": "cleared", "value": 0.0, "threshold": 0.0},
            "bool",
            "leak cleared (off)",
        ),
    ],
)
def test_the_timeline_says_an_alarm_in_its_sensors_unit(alarm, unit, text):
    from casebridge.lifecycle import alarm_event_text

    assert alarm_event_text(make_alarm(**alarm), unit) == text


def test_a_draft_of_a_sites_own_condition_has_its_title_and_its_sensors_unit():
    from stream.conditions import Vocabulary
    from stream.config import parse_rule

    damp = parse_rule({"id": "damp", "condition": "damp", "kind": "humidity", "above": 75,
                       "clear": 70, "title": {"en": "Damp cellar"}})  # fmt: skip
    hygrometer = SENSOR.model_copy(update={"kind": "humidity", "unit": "%"})
    alarm = make_alarm(condition="damp", value=79.0, threshold=75.0)
    d = draft_case(alarm, site=SITE, sensor=hygrometer, route=ROUTE, now=T0,
                   conditions=Vocabulary([damp]))  # fmt: skip
    assert d.title.startswith("Damp cellar — ")
    assert d.unit == "%"
    assert draft_case(ALARM, site=SITE, sensor=SENSOR, route=ROUTE, now=T0).unit == "°C"
    assert draft_case(ALARM, site=None, sensor=None, route=ROUTE, now=T0).unit is None


def test_a_rate_cases_value_is_per_minute_in_its_draft_and_timeline():
    from casebridge.lifecycle import alarm_event_text
    from stream.conditions import Vocabulary
    from stream.config import parse_rule

    rising = parse_rule({"id": "co2", "condition": "co2_rising", "kind": "co2", "rate": 100})
    meter = SENSOR.model_copy(update={"kind": "co2", "unit": "ppm"})
    alarm = make_alarm(condition="co2_rising", value=150.0, threshold=100.0)
    d = draft_case(alarm, site=SITE, sensor=meter, route=ROUTE, now=T0,
                   conditions=Vocabulary([rising]))  # fmt: skip
    assert d.unit == "ppm/min"
    text = alarm_event_text(alarm, d.unit)
    assert text == "co2_rising raised warning at 150.0 ppm/min (threshold 100 ppm/min)"
    heat = make_alarm(condition="heat_rise", value=9.6, threshold=8.3)
    assert draft_case(heat, site=SITE, sensor=SENSOR, route=ROUTE, now=T0).unit == "°C/min"
