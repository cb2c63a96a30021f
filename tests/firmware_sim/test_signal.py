from datetime import UTC, datetime, timedelta

import pytest

from firmware_sim.signal import Glitch, Profile

T0 = datetime(2026, 1, 14, 22, 0, tzinfo=UTC)
H = timedelta(hours=1)


def test_profiles_interpolate_between_points_and_hold_at_the_ends():
    p = Profile(start=T0, points=[(0 * H, 10.0), (2 * H, 4.0)])
    assert p.value_at(T0 - H) == 10.0
    assert p.value_at(T0 + H) == 7.0
    assert p.value_at(T0 + 5 * H) == 4.0


def test_noise_is_seeded_so_replays_are_identical():
    a = Profile(start=T0, points=[(0 * H, 10.0)], noise=0.5, seed=7)
    b = Profile(start=T0, points=[(0 * H, 10.0)], noise=0.5, seed=7)
    c = Profile(start=T0, points=[(0 * H, 10.0)], noise=0.5, seed=8)
    moments = [T0 + timedelta(minutes=m) for m in range(50)]
    assert [a.value_at(t) for t in moments] == [b.value_at(t) for t in moments]
    assert [a.value_at(t) for t in moments] != [c.value_at(t) for t in moments]
    assert all(abs(a.value_at(t) - 10.0) < 3 for t in moments)


def test_glitches_replace_the_signal_for_their_duration():
    p = Profile(
        start=T0,
        points=[(0 * H, 20.0)],
        glitches=[Glitch(at=H, value=-127.0, duration=timedelta(minutes=2))],
    )
    assert p.value_at(T0 + H + timedelta(minutes=1)) == -127.0
    assert p.value_at(T0 + H + timedelta(minutes=2)) == 20.0


def test_points_must_be_in_time_order():
    with pytest.raises(ValueError, match="time order"):
        Profile(start=T0, points=[(H, 1.0), (0 * H, 2.0)])
