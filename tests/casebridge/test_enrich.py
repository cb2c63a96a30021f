from datetime import timedelta

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
