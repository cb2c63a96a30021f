"""Conditions as data: a site names its own (with titles per language) on any kind of sensor,
and every part of husvakt reads the same vocabulary."""

import re

import pytest
from pydantic import ValidationError

from stream.conditions import Vocabulary, is_threshold
from stream.config import DEFAULT_RULES, ThresholdRule, conditions_of, parse_rule

DAMP = {
    "id": "damp-cellar",
    "condition": "damp",
    "kind": "humidity",
    "above": 75,
    "clear": 70,
    "hold": "6h",
    "title": {"en": "Damp cellar", "sv": "Fukt i källaren"},
}


def test_a_site_names_a_threshold_condition_of_its_own_on_any_kind_of_sensor():
    row = parse_rule(DAMP)
    assert isinstance(row, ThresholdRule)
    assert (row.condition, row.kind, row.above, row.clear, row.hold) == (
        "damp",
        "humidity",
        75,
        70,
        21600.0,
    )
    assert conditions_of([*DEFAULT_RULES, row])[-1] == "damp"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "x", "condition": "gateway_clock", "below": 1, "clear": 2}, "not a threshold"),
        ({"id": "x", "condition": "stream_lag", "above": 1, "clear": 0}, "not a threshold"),
        ({"id": "x", "condition": "heat_rise", "below": 1}, "Extra inputs"),
        ({"id": "x", "condition": "Damp Cellar", "above": 1, "clear": 0}, "condition"),
        ({**DAMP, "title": {"en": ""}}, "en title"),
        ({**DAMP, "title": {"sv": "x" * 81}}, "sv title"),
        ({**DAMP, "title": {"en": "bell\x07"}}, "en title"),
        ({**DAMP, "clear": 80}, "'clear' (80.0) must be below 'above' (75.0)"),
    ],
)
def test_a_row_that_cannot_be_a_condition_is_refused_with_its_reason(row, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        parse_rule(row)


def test_the_vocabulary_has_the_built_in_titles_and_the_configs_own():
    words = Vocabulary([parse_rule(DAMP), parse_rule({**DAMP, "id": "damp-2", "title": None})])
    assert words.title("freezing") == "Freezing risk"
    assert words.title("freezing", "sv") == "Frysrisk"
    assert words.title("damp", "sv") == "Fukt i källaren"
    assert words.title("damp", "de") == "Damp cellar"  # a language without a title: English
    assert words.names()[:2] == ["freezing", "fire"] and words.names()[-1] == "damp"
    assert "damp" in words and "co2_high" not in words
    # a condition nobody titled (an old case's) reads as its id in words
    assert words.title("co2_high") == "Co2 high"
    assert words.titles("sv")["co2_high"] == "Co2 high"


def test_a_config_title_overrides_a_built_in_one_language_by_language():
    row = parse_rule({"id": "frost", "condition": "freezing", "below": 5, "clear": 7,
                      "title": {"sv": "Frostvarning"}})  # fmt: skip
    words = Vocabulary([row])
    assert words.title("freezing", "sv") == "Frostvarning"
    assert words.title("freezing", "en") == "Freezing risk"


def test_which_conditions_are_thresholds():
    assert is_threshold("freezing") and is_threshold("damp")
    assert not any(
        is_threshold(c) for c in ("heat_rise", "sensor_offline", "sensor_fault", "stream_lag")
    )


def test_a_site_names_a_rate_condition_of_its_own_on_any_kind_of_sensor():
    from stream.config import RiseRule

    row = parse_rule(
        {"id": "co2-rising", "condition": "co2_rising", "kind": "co2", "rate": 100,
         "window": "10m", "title": {"en": "CO₂ rising fast", "sv": "CO₂ stiger snabbt"}}
    )  # fmt: skip
    assert isinstance(row, RiseRule) and (row.condition, row.kind, row.rate) == (
        "co2_rising",
        "co2",
        100,
    )
    words = Vocabulary([row])
    assert words.title("co2_rising", "sv") == "CO₂ stiger snabbt"
    assert not words.is_threshold("co2_rising") and words.is_threshold("damp")
    # heat_rise keeps its defaults; a built-in threshold or system condition is no rate
    assert parse_rule({"id": "h", "condition": "heat_rise"}).rate == 8.3
    for taken in ("freezing", "sensor_fault", "stream_lag"):
        with pytest.raises(ValidationError, match="not a rate condition"):
            parse_rule({"id": "x", "condition": taken, "rate": 5})


def test_a_rate_row_of_a_sites_own_raises_its_condition_in_its_unit():
    from stream.rules import RiseState, evaluate
    from tests.factories import make_reading

    row = parse_rule({"id": "co2-rising", "condition": "co2_rising", "kind": "co2",
                      "rate": 100, "window": "10m", "min_span": "2m"})  # fmt: skip
    state, raised = RiseState(), []
    for minute in range(8):
        r = make_reading(minute, 600 + 150 * minute).model_copy(
            update={"kind": "co2", "unit": "ppm"}
        )
        state, alarms = evaluate(state, r, row, r.ts)
        raised += alarms
    assert [(a.condition, a.state) for a in raised] == [("co2_rising", "raised")]
    assert raised[0].reason.startswith("rising 150.0 ppm/min over 10 min")
