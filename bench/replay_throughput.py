"""Replay throughput: 1,000 sensors × 24 h at one reading a minute (1.44 M readings) through
the rules and the case bridge on a virtual clock.

Measured in one run, stage by stage over the same scenario: generating the device outputs
(the baseline), + normalising them as the gateway would, + the embedded rules and the case
bridge in the same process, and the full replay as `husvakt replay` runs a scenario this
long (its devices simulated and normalised in a worker process; checked to give the same
result). Every 100th sensor freezes at 03:00, so the full replay must end with exactly
sensors/100 cases.

    .venv/bin/python -m bench.replay_throughput [--sensors 1000] [--hours 24]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from firmware_sim.scenario import Scenario
from husvakt.config import HusvaktConfig
from husvakt.replay import (
    Arrival,
    ReplayResult,
    arrivals_from_scenario,
    arrivals_in_worker,
    replay,
    scenario_end,
)


def config(sensors: int) -> HusvaktConfig:
    return HusvaktConfig.model_validate(
        {
            "sites": [{"id": "bench", "name": "Bench"}],
            "gateway": {"id": "gw", "site": "bench", "mqtt_brokers": {"local": {}}},
            "sensors": [
                {"id": f"t{i}", "source": {"type": "mqtt", "topic": f"bench/t{i}"}}
                for i in range(sensors)
            ],
            "teams": [{"id": "fm", "name": "FM", "members": ["eva"]}],
            "routing": [{"id": "all", "team": "fm"}],
        }
    )


def scenario(sensors: int, hours: float) -> Scenario:
    return Scenario.model_validate(
        {
            "name": f"bench-{sensors}x{hours:g}h",
            "start": datetime(2026, 1, 14, 0, 0, tzinfo=UTC),
            "duration": hours * 3600 - 60,
            "devices": [
                {
                    "sensor": f"t{i}",
                    "every": 60,
                    "signal": {"baseline": 12.0, "daily_amplitude": 2.0, "noise": 0.1, "seed": i},
                }
                for i in range(sensors)
            ],
            "timeline": [
                {"at": 3 * 3600, "sensor": f"t{i}", "ramp": {"rate": -0.5, "per": 60, "to": 3.0}}
                for i in range(0, sensors, 100)
            ],
        }
    )


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=24.0)
    args = parser.parse_args(argv)
    cfg, sc = config(args.sensors), scenario(args.sensors, args.hours)

    start = time.perf_counter()
    outputs = sum(1 for _ in sc.outputs())
    generate = time.perf_counter() - start

    start = time.perf_counter()
    normalised = sum(1 for _ in arrivals_from_scenario(sc, cfg, Counter()))
    normalise = time.perf_counter() - start

    async def full(arrivals: Callable[..., Iterator[Arrival]]) -> tuple[float, ReplayResult]:
        counts: Counter[str] = Counter()
        start = time.perf_counter()
        result = await replay(
            name=sc.name,
            config=cfg,
            arrivals=arrivals(sc, cfg, counts),
            counts=counts,
            until=scenario_end(sc),
        )
        return time.perf_counter() - start, result

    alone, result = await full(arrivals_from_scenario)
    split, in_worker = await full(arrivals_in_worker)
    expected_cases = len(range(0, args.sensors, 100))
    ok = (
        len(result.cases) == expected_cases
        and outputs == normalised
        and in_worker.model_dump() == result.model_dump()
    )
    print(
        f"replay throughput: {args.sensors:,} sensors × {args.hours:g} h at 1/min "
        f"= {outputs:,} readings"
    )
    print("| stage | time (s) | readings/s | vs generating alone |")
    print("|---|---:|---:|---:|")
    for label, seconds in (
        ("generate device outputs (baseline)", generate),
        ("+ normalise as the gateway does", normalise),
        ("+ rules and case bridge (full replay, one process)", alone),
        ("+ rules and case bridge, the devices in a worker process (`husvakt replay`)", split),
    ):
        print(f"| {label} | {seconds:.1f} | {outputs / seconds:,.0f} | {generate / seconds:.2f}× |")
    print(f"cases: {len(result.cases)} (expected {expected_cases}); alarms: {len(result.alarms)}")
    same = in_worker.model_dump() == result.model_dump()
    print(f"devices in a worker: {'the same result' if same else 'A DIFFERENT RESULT'}")
    if (args.sensors, args.hours) == (1000, 24.0):
        print(f"goal replay ≤ 30 s: {split:.1f} s, {'met' if split <= 30 else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
