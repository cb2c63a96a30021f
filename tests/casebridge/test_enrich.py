from casebridge.config import RouteRow
from casebridge.enrich import draft_case
from gateway.config import SensorConfig, SiteConfig
from tests.factories import make_alarm

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
ALARM = make_alarm(site="skolan")
ROUTE = RouteRow(id="frost", condition="freezing", team="fm", priority="P2")


def test_a_case_draft_says_what_where_and_who():
    d = draft_case(ALARM, site=SITE, sensor=SENSOR, route=ROUTE)
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


def test_a_sensor_missing_from_the_registry_still_gets_a_case():
    d = draft_case(ALARM, site=None, sensor=None, route=ROUTE)
    assert d.title == "Freezing risk — skolan (t1)"
    assert d.site_name == "skolan" and d.room is None
