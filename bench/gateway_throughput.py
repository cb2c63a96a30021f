"""Gateway throughput: MQTT source → durable outbox → MQTT uplink, delivery confirmed.

Runs `husvakt gateway` as its own process against a mosquitto of our own and measures, in
the same run:
- the baseline: the same messages relayed by mosquitto straight to a subscriber (no gateway);
- the gateway at full speed: readings/s from the first publish until the last reading arrived
  on the uplink topic (every reading committed to SQLite with synchronous=FULL before it is
  uplinked, and removed only after the broker's PUBACK), with the gateway's CPU and peak RSS;
- a Raspberry-Pi-like load: 50 sensors every 10 s — the gateway's CPU share and RSS.

    .venv/bin/python -m bench.gateway_throughput [--messages 20000] [--sensors 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

from gateway.wire import decode_batch
from tests.services import Mosquitto, wait_for_port

CONFIG = """
sites: [{{id: bench, name: Bench}}]
gateway:
  id: gw
  site: bench
  mqtt_brokers: {{local: {{host: 127.0.0.1, port: {port}}}}}
  outbox: {{path: {outbox}}}
  uplink: {{host: 127.0.0.1, port: {port}, batch: 500, max_rate: 1000000, status_every: 5}}
sensors:
{sensors}
teams: [{{id: fm, name: FM}}]
routing: [{{id: all, team: fm}}]
"""


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS in bytes) of a running process, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = next(
        int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    return cpu, peak


async def publish(
    port: int, topics: list[str], count: int, *, every: float = 0.0, clients: int = 4
) -> None:
    """`count` QoS 1 messages over `clients` connections (QoS 1 waits for each PUBACK, so one
    connection alone would measure the publisher, not the gateway)."""

    async def one(k: int) -> None:
        async with aiomqtt.Client("127.0.0.1", port, identifier=f"bench-devices-{k}") as c:
            for i in range(k, count, clients):
                await c.publish(topics[i % len(topics)], f"{20 + (i % 50) / 10:.1f}", qos=1)
                if every:
                    await asyncio.sleep(every * clients)

    await asyncio.gather(*(one(k) for k in range(clients)))


async def receive(
    port: int, topic: str, count: int, ready: asyncio.Event, *, batched: bool
) -> float:
    """Seconds until `count` readings arrived, from when `ready` was set."""
    got = 0
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=f"bench-rx-{topic}", max_queued_incoming_messages=0
    ) as c:
        await c.subscribe(topic, qos=1)
        ready.set()
        start = None
        async for message in c.messages:
            start = start or time.perf_counter()
            got += len(decode_batch(message.payload).readings) if batched else 1
            if got >= count:
                return time.perf_counter() - start
    raise AssertionError("unreachable")


async def relay_baseline(port: int, n: int, topics: list[str]) -> float:
    ready = asyncio.Event()
    rx = asyncio.create_task(receive(port, "bench/#", n, ready, batched=False))
    await ready.wait()
    start = time.perf_counter()
    await publish(port, topics, n)
    await rx
    return n / (time.perf_counter() - start)


def start_gateway(workdir: Path, port: int, sensors: int) -> subprocess.Popen[bytes]:
    config = workdir / "site.yaml"
    lines = "\n".join(
        f"  - {{id: t{i}, source: {{type: mqtt, topic: bench/t{i}}}}}" for i in range(sensors)
    )
    outbox = workdir / f"outbox-{time.monotonic_ns()}.db"
    config.write_text(CONFIG.format(port=port, outbox=outbox, sensors=lines))
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "husvakt.cli", "gateway", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def gateway_run(workdir: Path, port: int, n: int, sensors: int) -> tuple[float, float, int]:
    topics = [f"bench/t{i}" for i in range(sensors)]
    gw = start_gateway(workdir, port, sensors)
    try:
        ready = asyncio.Event()
        rx = asyncio.create_task(
            receive(port, "husvakt/v1/bench/gw/readings", n, ready, batched=True)
        )
        await ready.wait()
        await asyncio.sleep(1.0)  # let the gateway subscribe to its sensors' topics
        cpu0, _ = proc_usage(gw.pid)
        start = time.perf_counter()
        await publish(port, topics, n)
        await rx
        elapsed = time.perf_counter() - start
        cpu1, peak = proc_usage(gw.pid)
        return n / elapsed, (cpu1 - cpu0) / elapsed, peak
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(timeout=30)


async def pi_load(workdir: Path, port: int, seconds: float) -> tuple[float, int]:
    sensors = 50
    topics = [f"bench/t{i}" for i in range(sensors)]
    gw = start_gateway(workdir, port, sensors)
    try:
        await asyncio.sleep(1.0)
        cpu0, _ = proc_usage(gw.pid)
        start = time.perf_counter()
        # 50 sensors every 10 s = 5 readings/s, evenly spread
        await publish(port, topics, int(seconds * 5), every=0.2)
        elapsed = time.perf_counter() - start
        cpu1, peak = proc_usage(gw.pid)
        return (cpu1 - cpu0) / elapsed, peak
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(timeout=30)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--pi-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory(prefix="husvakt-bench-") as tmp:
        workdir = Path(tmp)
        broker = Mosquitto.configured(binary, workdir)
        broker.start()
        try:
            wait_for_port("127.0.0.1", broker.port, proc=broker.proc)  # type: ignore[arg-type]
            topics = [f"bench/t{i}" for i in range(args.sensors)]
            baseline = await relay_baseline(broker.port, args.messages, topics)
            rate, cpu, peak = await gateway_run(workdir, broker.port, args.messages, args.sensors)
            pi_cpu, pi_peak = await pi_load(workdir, broker.port, args.pi_seconds)
        finally:
            broker.stop()
    print(f"gateway throughput: {args.messages:,} readings from {args.sensors} MQTT sensors")
    print("| path | readings/s | vs broker relay | gateway CPU | gateway peak RSS |")
    print("|---|---:|---:|---:|---:|")
    print(f"| mosquitto relay, no gateway (baseline) | {baseline:,.0f} | 1.00× | – | – |")
    print(
        f"| MQTT source → outbox → MQTT uplink (confirmed) | {rate:,.0f} | "
        f"{rate / baseline:.2f}× | {cpu * 100:.0f}% of a core | {peak / 1e6:.0f} MB |"
    )
    print(
        f"| Pi-like load: 50 sensors every 10 s ({args.pi_seconds:.0f} s) | 5 | – | "
        f"{pi_cpu * 100:.1f}% of a core | {pi_peak / 1e6:.0f} MB |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
