"""The one signal model every simulated device plays: a scenario's outputs."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from firmware_sim.play import Playback, play
from firmware_sim.scenario import Scenario

T0 = datetime(2026, 1, 14, 22, 0, tzinfo=UTC)
H = 3600


def values(scenario, index=0):
    return [(o.at, o.value, o.fault) for o in scenario.device_outputs(index)]


def test_a_course_interpolates_between_points_and_holds_at_the_ends():
    night = Scenario.single(
        "t", start=T0, signal={"points": [[H, 10.0], [3 * H, 4.0]]}, every=H, duration=5 * H
    )
    assert [v for _, v, _ in values(night)] == [10.0, 10.0, 7.0, 4.0, 4.0, 4.0]


def test_a_course_adds_to_the_baseline_and_takes_durations():
    night = Scenario.model_validate(
        {
            "name": "n",
            "start": T0,
            "duration": "2h",
            "devices": [
                {
                    "sensor": "t",
                    "every": "1h",
                    "signal": {"baseline": 1.0, "points": [["0s", 0.0], ["2h", -4.0]]},
                }
            ],
        }
    )
    assert [v for _, v, _ in values(night)] == [1.0, -1.0, -3.0]


def test_points_must_be_in_time_order():
    with pytest.raises(ValidationError, match="time order"):
        Scenario.single("t", start=T0, signal={"points": [[H, 1.0], [0, 2.0]]})


def test_noise_is_seeded_so_replays_are_identical():
    def night(seed):
        return Scenario.single(
            "t", start=T0, signal={"baseline": 10.0, "noise": 0.5, "seed": seed}, duration=H
        )

    assert values(night(7)) == values(night(7))
    assert values(night(7)) != values(night(8))
    assert all(abs(v - 10.0) < 3 for _, v, _ in values(night(7)))


def test_faults_replace_the_signal_for_their_duration_and_a_spike_may_name_its_value():
    night = Scenario.single(
        "t",
        start=T0,
        signal={"baseline": 20.0},
        every=60,
        duration=600,
        timeline=[
            {"at": 60, "fault": "disconnected", "for": 120},
            {"at": 300, "fault": "spike", "value": 3276.7},
            {"at": 420, "fault": "spike"},
        ],
    )
    assert values(night) == [
        (0, 20.0, None),
        (60, None, "disconnected"),
        (120, None, "disconnected"),
        (180, 20.0, None),
        (240, 20.0, None),
        (300, 3276.7, None),
        (360, 20.0, None),
        (420, 80.0, None),
        (480, 20.0, None),
        (540, 20.0, None),
        (600, 20.0, None),
    ]
    with pytest.raises(ValidationError, match="only a spike has a value"):
        Scenario.single(
            "t", start=T0, signal={}, timeline=[{"at": 0, "fault": "stuck", "value": 1}]
        )


def test_a_playback_shows_the_latest_output_at_a_moment():
    night = Scenario.single(
        "t", start=T0, signal={"points": [[0, 0.0], [600, 10.0]]}, every=60, duration=600
    )
    shown = Playback(night.device_outputs(0))
    assert shown.at(T0 - timedelta(seconds=1)) is None
    assert shown.at(T0 + timedelta(seconds=59)).value == 0.0
    assert shown.at(T0 + timedelta(seconds=60)).value == 1.0
    assert shown.at(T0 + timedelta(hours=5)).value == 10.0  # held after the last


class FakeClock:
    """A virtual clock: sleeping moves time on at once."""

    def __init__(self, now):
        self._now = now
        self.slept = []

    def now(self):
        return self._now

    async def sleep(self, seconds):
        self.slept.append(seconds)
        self._now += timedelta(seconds=seconds)


async def test_play_hands_each_output_over_when_it_is_due():
    night = Scenario.single("t", start=T0, signal={"baseline": 5.0}, every=60, duration=180)
    clock = FakeClock(T0 + timedelta(seconds=90))  # late: the first two are due at once
    seen = []

    async def act(output):
        seen.append((clock.now(), output.at))
        await asyncio.sleep(0)

    await play(night.device_outputs(0), clock, act)
    assert seen == [
        (T0 + timedelta(seconds=90), 0),
        (T0 + timedelta(seconds=90), 60),
        (T0 + timedelta(seconds=120), 120),
        (T0 + timedelta(seconds=180), 180),
    ]
    assert clock.slept == [30.0, 60.0]


@pytest.mark.parametrize("power_cut", [False, True])
def test_a_scenario_plays_its_devices_outputs_merged_in_time_and_device_order(power_cut):
    """Devices that sample alike are played in lockstep: the outputs are exactly each device's
    own outputs merged by time, then device — whatever the periods, faults and ramps."""
    import heapq

    timeline = [
        {"at": 300, "sensor": "t1", "fault": "stuck", "for": 200},
        {"at": 120, "sensor": "t3", "ramp": {"rate": -0.5, "per": 60, "to": 3.0}},
    ]
    if power_cut:
        timeline.append({"at": 400, "power_cut": 100})
    scenario = Scenario.model_validate(
        {
            "name": "mixed",
            "start": T0,
            "duration": 1800,
            "devices": [
                {
                    "sensor": f"t{i}",
                    "every": every,
                    "signal": {"baseline": 12.0, "daily_amplitude": 2.0, "noise": 0.3, "seed": i},
                }
                for i, every in enumerate([60, 60, 45.5, 60, 10, 45.5, 0.7])
            ],
            "timeline": timeline,
        }
    )
    merged = list(heapq.merge(*(scenario.device_outputs(i) for i in range(7))))
    played = list(scenario.outputs())
    assert played == merged
    assert [type(o) for o in played] == [type(o) for o in merged]
    assert len({o.order for o in played}) == 7
