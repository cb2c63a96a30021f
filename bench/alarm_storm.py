"""Alarm storm: 10,000 alarms over 1,000 sensors in one burst must end with exactly 1,000 cases.

Runs the real case bridge (routing, enrichment, store) on SQLite and on a throwaway PostgreSQL
server: one alarm per transaction (the baseline, as the engine recorded alarms before), the
engine's way (the alarms of each uplink batch of `--batch` in one transaction), and the same
batches from concurrent writers (the race the unique index over open cases settles). The goal
is the batched storm in at most 2 s on both, with exactly one case per sensor. Prints a
Markdown table.

    .venv/bin/python -m bench.alarm_storm [--sensors 1000] [--per-sensor 10] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bench.machine import machine
from casebridge.bridge import CaseBridge
from casebridge.config import RouteRow, TeamConfig
from casebridge.store.sql import MemoryCaseStore, SqlCaseStore
from stream.models import Alarm
from tests.services import PostgresServer

T0 = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return T0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def storm(sensors: int, per_sensor: int, seed: int = 1) -> list[Alarm]:
    """Per sensor: a raise, then escalations and repeats, shuffled across sensors."""
    alarms = [
        Alarm(
            episode=f"fire:s:t{s}:e",
            site="s",
            sensor=f"t{s}",
            condition="fire",
            state="raised" if i == 0 else "updated",
            severity="warning" if i < per_sensor // 2 else "critical",
            value=51.0 + i,
            threshold=50.0,
            rule="fire",
            started_at=T0,
            ts=T0 + timedelta(seconds=i),
        )
        for s in range(sensors)
        for i in range(per_sensor)
    ]
    random.Random(seed).shuffle(alarms)  # noqa: S311 - a reproducible order, not a secret
    return alarms


@dataclass
class Result:
    backend: str
    mode: str
    seconds: float
    cases: int
    alarms: int


async def run(
    store: SqlCaseStore, alarms: list[Alarm], batch: int, concurrency: int
) -> tuple[float, int]:
    await store.start()
    bridge = CaseBridge(
        store=store,
        sites=(),
        sensors={},
        routes=(RouteRow(id="all", team="fm"),),
        clock=FixedClock(),
        teams=(TeamConfig(id="fm", name="FM"),),
    )
    gate = asyncio.Semaphore(concurrency)

    batches = [alarms[i : i + batch] for i in range(0, len(alarms), batch)]

    async def one(alarms: list[Alarm]) -> None:
        async with gate:
            await bridge.handle_many(alarms)

    start = time.perf_counter()
    await asyncio.gather(*(one(b) for b in batches))
    seconds = time.perf_counter() - start
    cases = await store.count_cases()
    await store.aclose()
    return seconds, cases


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--per-sensor", type=int, default=10)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    alarms = storm(args.sensors, args.per_sensor)
    modes = (
        ("one alarm per transaction (baseline)", 1, 1),
        (f"batches of {args.batch}", args.batch, 1),
        (f"batches of {args.batch}, {args.concurrency} writers", args.batch, args.concurrency),
    )
    results = []
    pg = PostgresServer().start()
    try:
        for n, (mode, batch, concurrency) in enumerate(modes):
            seconds, cases = await run(MemoryCaseStore(), alarms, batch, concurrency)
            results.append(Result("SQLite", mode, seconds, cases, len(alarms)))
            url = await pg.create_database(f"storm_{n}")
            seconds, cases = await run(SqlCaseStore.from_url(url), alarms, batch, concurrency)
            results.append(Result("PostgreSQL", mode, seconds, cases, len(alarms)))
    finally:
        pg.stop()
    print(f"alarm storm: {len(alarms):,} alarms over {args.sensors:,} sensors ({machine()})")
    print("| store | mode | time (s) | alarms/s | cases | one per sensor | vs baseline | goal |")
    print("|---|---|---:|---:|---:|---|---:|---|")
    ok = True
    for r in results:
        exact = r.cases == args.sensors
        ok &= exact
        baseline = next(b for b in results if b.backend == r.backend).seconds
        goal = (
            ""
            if r.mode.startswith("one")
            else ("≤ 2 s: met" if r.seconds <= 2 else "≤ 2 s: NOT met")
        )
        print(
            f"| {r.backend} | {r.mode} | {r.seconds:.2f} | {r.alarms / r.seconds:,.0f} | "
            f"{r.cases:,} | {'yes' if exact else 'NO'} | {baseline / r.seconds:.1f}× | {goal} |"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
