"""Alarm storm: 10,000 alarms over 1,000 sensors in one burst must end with exactly 1,000 cases.

Runs the real case bridge (routing, enrichment, store) on SQLite and on a throwaway PostgreSQL
server, each twice: one alarm at a time (the baseline) and in a burst of concurrent writers
(the race the unique index over open cases settles). Prints a Markdown table.

    .venv/bin/python -m bench.alarm_storm [--sensors 1000] [--per-sensor 10] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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


async def run(store: SqlCaseStore, alarms: list[Alarm], concurrency: int) -> tuple[float, int]:
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

    async def one(alarm: Alarm) -> None:
        async with gate:
            await bridge.handle(alarm)

    start = time.perf_counter()
    if concurrency == 1:
        for alarm in alarms:
            await bridge.handle(alarm)
    else:
        await asyncio.gather(*(one(a) for a in alarms))
    seconds = time.perf_counter() - start
    cases = await store.count_cases()
    await store.aclose()
    return seconds, cases


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--per-sensor", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    alarms = storm(args.sensors, args.per_sensor)
    results = []
    pg = PostgresServer().start()
    try:
        for mode, concurrency in (
            ("sequential", 1),
            (f"burst ×{args.concurrency}", args.concurrency),
        ):
            seconds, cases = await run(MemoryCaseStore(), alarms, concurrency)
            results.append(Result("SQLite", mode, seconds, cases, len(alarms)))
            name = f"storm_{concurrency}"
            url = await pg.create_database(name)
            seconds, cases = await run(SqlCaseStore.from_url(url), alarms, concurrency)
            results.append(Result("PostgreSQL", mode, seconds, cases, len(alarms)))
    finally:
        pg.stop()
    baseline = results[0].seconds
    print(f"alarm storm: {len(alarms):,} alarms over {args.sensors:,} sensors")
    print("| store | mode | time (s) | alarms/s | cases | one per sensor | vs SQLite sequential |")
    print("|---|---|---:|---:|---:|---|---:|")
    ok = True
    for r in results:
        exact = r.cases == args.sensors
        ok &= exact
        rate = r.alarms / r.seconds
        print(
            f"| {r.backend} | {r.mode} | {r.seconds:.2f} | {rate:,.0f} | {r.cases:,} | "
            f"{'yes' if exact else 'NO'} | {baseline / r.seconds:.2f}× |"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
