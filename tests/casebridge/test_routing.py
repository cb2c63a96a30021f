from datetime import UTC, datetime

import pytest

from casebridge.config import RouteRow
from casebridge.errors import RoutingError
from casebridge.routing import explain, match

TABLE = (
    RouteRow(id="fallback", team="fm"),
    RouteRow(id="frost", condition="freezing", team="fm", priority="P2"),
    RouteRow(id="hard-frost", condition="freezing", severity="critical", team="vvs", priority="P1"),
    RouteRow(id="fire", condition="fire", team="larm", priority="P1"),
    RouteRow(id="school-b", site="b", team="b-team"),
    RouteRow(id="school-b-fire", site="b", condition="fire", team="b-larm", priority="P1"),
    RouteRow(id="boiler", room="plant", team="boiler-techs", priority="P2"),
    RouteRow(
        id="frost-nights", condition="freezing", hours="18:00-07:00", team="jour", priority="P2"
    ),
    RouteRow(
        id="frost-weekend", condition="freezing", days=["sat", "sun"], team="helg", priority="P2"
    ),
)
# Wednesday 14 January 2026, 10:00 in Stockholm (09:00 UTC)
WEDNESDAY_DAY = datetime(2026, 1, 14, 9, 0, tzinfo=UTC)


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
    assert match(TABLE, facts(**over), at=WEDNESDAY_DAY, tz="Europe/Stockholm").id == row


@pytest.mark.parametrize(
    ("local", "row"),
    [
        ("2026-01-14T10:00", "frost"),  # Wednesday daytime
        ("2026-01-14T18:00", "frost-nights"),
        ("2026-01-15T06:59", "frost-nights"),
        ("2026-01-15T07:00", "frost"),
        ("2026-01-17T12:00", "frost-weekend"),  # Saturday
        (
            "2026-01-18T23:30",
            "frost-nights",
        ),  # a Sunday night: both windows match; table order decides
    ],
)
def test_time_windows_follow_the_site_clock(local, row):
    from zoneinfo import ZoneInfo

    at = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Europe/Stockholm"))
    assert match(TABLE, facts(), at=at, tz="Europe/Stockholm").id == row


def test_days_name_the_day_a_night_window_starts():
    friday_night = RouteRow(id="fri", days=["fri"], hours="18:00-07:00", team="x")
    assert friday_night.in_window(datetime(2026, 1, 16, 23, 0, tzinfo=UTC))  # Friday
    assert friday_night.in_window(
        datetime(2026, 1, 17, 6, 0, tzinfo=UTC)
    )  # Saturday morning, same night
    assert not friday_night.in_window(datetime(2026, 1, 17, 23, 0, tzinfo=UTC))
    assert not friday_night.in_window(
        datetime(2026, 1, 16, 6, 0, tzinfo=UTC)
    )  # Friday morning: Thursday's night


def test_no_matching_row_is_an_error():
    with pytest.raises(RoutingError):
        match(TABLE[1:2], facts(condition="fire"), at=WEDNESDAY_DAY)


def test_explain_says_why_each_row_did_or_did_not_apply():
    why = explain(TABLE, facts(severity="critical"), at=WEDNESDAY_DAY, tz="Europe/Stockholm")
    assert why.chosen.id == "hard-frost"
    notes = {row.id: note for row, note in why.rows}
    assert notes["hard-frost"].startswith("CHOSEN")
    assert notes["frost"].startswith("matches, but is less specific")
    assert notes["fire"].startswith("does not match condition=fire")
    assert notes["frost-nights"].startswith("outside its time window")
