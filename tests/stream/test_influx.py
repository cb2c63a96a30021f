"""Readings to InfluxDB's v2 write API, against a real server (VictoriaMetrics)."""

import asyncio
import json
import urllib.request

import pytest

from stream.config import InfluxConfig
from stream.influx import InfluxHistory
from tests.factories import make_reading

pytestmark = pytest.mark.influx


def exported(url):
    urllib.request.urlopen(f"{url}/internal/force_flush").read()
    with urllib.request.urlopen(f"{url}/api/v1/export?match[]=reading_value&start=0") as response:
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]


async def test_every_reading_is_written_in_batches_with_its_tags(victoria_metrics):
    history = InfluxHistory(InfluxConfig(url=victoria_metrics.url, batch_size=50, flush_every=0.1))
    task = asyncio.create_task(history.run())
    readings = [make_reading(m, 20 + m / 10, seq=m + 1) for m in range(120)]
    readings.append(make_reading(120, 85.0, fault="ds18b20-power-on-reset", seq=121))
    history.add(readings)
    await history.wait_until(lambda: history.written == len(readings))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    series = await asyncio.to_thread(exported, victoria_metrics.url)
    by_quality = {s["metric"]["quality"]: s for s in series}
    good = by_quality["good"]
    assert (
        good["metric"].items()
        >= {
            "site": "s",
            "gateway": "g",
            "sensor": "t1",
            "kind": "temperature",
            "unit": "°C",
        }.items()
    )
    assert len(good["values"]) == 120
    assert good["values"][:2] == [20.0, 20.1]
    assert by_quality["fault"]["metric"]["fault"] == "ds18b20-power-on-reset"


async def test_an_unreachable_database_keeps_the_points_and_never_blocks_the_rules():
    from husvakt.broker import free_port

    dead = InfluxHistory(
        InfluxConfig(
            url=f"http://127.0.0.1:{free_port()}", batch_size=10, flush_every=0.05, buffer=25
        )
    )
    task = asyncio.create_task(dead.run())
    dead.add([make_reading(m, 20, seq=m + 1) for m in range(30)])  # returns at once
    await dead.wait_until(lambda: dead.failures >= 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dead.pending == 25
    assert dead.dropped == 5  # the buffer is bounded; the oldest go first, counted
    assert dead.written == 0
