import pytest

from casebridge.config import RouteRow
from casebridge.errors import RoutingError
from casebridge.routing import match

TABLE = (
    RouteRow(id="fallback", team="fm"),
    RouteRow(id="frost", condition="freezing", team="fm", priority="P2"),
    RouteRow(id="hard-frost", condition="freezing", severity="critical", team="vvs", priority="P1"),
    RouteRow(id="fire", condition="fire", team="larm", priority="P1"),
    RouteRow(id="school-b", site="b", team="b-team"),
    RouteRow(id="school-b-fire", site="b", condition="fire", team="b-larm", priority="P1"),
    RouteRow(id="boiler", room="plant", team="boiler-techs", priority="P2"),
)


def facts(**over):
    return {
        "site": "a",
        "sensor": "t1",
        "condition": "freezing",
        "severity": "warning",
        "kind": "temperature",
        "building": None,
        "room": None,
    } | over


@pytest.mark.parametrize(
    ("over", "row"),
    [
        ({}, "frost"),
        ({"severity": "critical"}, "hard-frost"),
        ({"condition": "fire"}, "fire"),
        ({"condition": "sensor_fault"}, "fallback"),
        ({"site": "b"}, "school-b"),
        ({"site": "b", "condition": "fire"}, "school-b-fire"),
        ({"site": "b", "condition": "fire", "room": "plant"}, "boiler"),
    ],
)
def test_the_most_specific_row_wins(over, row):
    assert match(TABLE, facts(**over)).id == row


def test_no_matching_row_is_an_error():
    with pytest.raises(RoutingError):
        match(TABLE[1:2], facts(condition="fire"))
