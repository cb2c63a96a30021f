"""Saying when behind: a stream that evaluates readings long after they were measured raises
one stream_lag case per site, and clears it when it is on time again; a gateway draining its
backlog is not lag while others are on time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stream.lag import LagMonitor

T0 = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)
SITES = ["nordskolan", "sodra"]


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def run(batches, *, until):
    """(evaluated at s, newest reading measured at s) batches; ticks every 10 s."""
    monitor = LagMonitor(max_lag=30, window=60)
    got = []
    pending = sorted(batches)
    for t in range(0, until + 1, 10):
        while pending and pending[0][0] <= t:
            now, newest = pending.pop(0)
            monitor.observe(at(newest), at(now))
        got += [(t, a.site, a.state) for a in monitor.tick(at(t), SITES)]
    return got


def test_a_stream_that_keeps_up_raises_nothing():
    assert run([(t, t - 1) for t in range(0, 300, 2)], until=300) == []


def test_a_stream_behind_for_a_whole_window_tells_every_site_and_clears_when_on_time():
    behind = [(t, t - 45) for t in range(0, 120, 2)]
    on_time = [(t, t - 1) for t in range(120, 200, 2)]
    assert run(behind + on_time, until=200) == [
        (60, "nordskolan", "raised"),
        (60, "sodra", "raised"),
        (120, "nordskolan", "cleared"),
        (120, "sodra", "cleared"),
    ]


def test_a_short_burst_of_old_batches_is_not_lag():
    batches = [(t, t - 1) for t in range(0, 300, 2)]
    batches += [(t + 1, t - 200) for t in range(100, 140, 2)]  # a backlog drained meanwhile
    assert run(batches, until=300) == []


def test_a_backlog_alone_for_less_than_the_window_is_not_lag():
    batches = [(t, t - 3600 + t * 60) for t in range(50)]  # an hour caught up in 50 s
    batches += [(t, t - 1) for t in range(50, 200, 2)]
    assert run(batches, until=200) == []


async def test_the_engine_raises_stream_lag_for_every_site_it_serves():
    from gateway.config import MqttPoint, SensorConfig
    from gateway.models import Reading
    from stream.config import DEFAULT_RULES
    from stream.engine import EmbeddedEngine
    from stream.registry import Registry
    from stream.table import RuleTable

    sensors = {
        (site, "t1"): SensorConfig(
            id="t1", site=site, gateway="g", source=MqttPoint(type="mqtt", topic=f"{site}/t1")
        )
        for site in SITES
    }

    class Clock:
        value = T0

        def now(self):
            return self.value

    clock = Clock()
    got = []

    async def sink(alarms):
        got.extend(alarms)

    engine = EmbeddedEngine(
        table=RuleTable(DEFAULT_RULES, sensors),
        clock=clock,
        sink=sink,
        registry=Registry(sensors),
        lag=LagMonitor(max_lag=30, window=60),
    )
    for step in range(8):  # every 10 s a batch measured two minutes ago
        clock.value = at(step * 10)
        reading = Reading(
            site="nordskolan",
            gateway="g",
            sensor="t1",
            kind="temperature",
            value=20.0,
            unit="°C",
            ts=at(step * 10 - 120),
            seq=step + 1,
        )
        await engine.process_batch([reading])
        await engine.tick()
    assert [(a.site, a.sensor, a.condition, a.state) for a in got] == [
        ("nordskolan", "stream", "stream_lag", "raised"),
        ("sodra", "stream", "stream_lag", "raised"),
    ]
    assert got[0].value == 120.0 and got[0].threshold == 30
