"""A day at the Pi load, time-scaled: does the gateway keep flat memory and file descriptors?

`husvakt gateway` (its own process, a gateway-only config) reads 50 MQTT thermometers and
uplinks to a broker; a day of their readings (50 sensors every 10 s = 432,000) is published
to it as fast as `--rate` allows, while a subscriber counts what is uplinked. Every tenth of
the way the gateway's resident memory (VmRSS), open file descriptors and outbox size are
sampled from /proc. Flat means: after the first fifth (warm-up: caches, SQLite's page cache),
memory grows by less than `--slack` MB and no descriptor stays open beyond the warm-up's
(one open only at the moment of a sample is not a leak: the last three samples must not all
be above).

    .venv/bin/python -m bench.soak [--readings 432000] [--rate 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

from bench.machine import machine
from tests.conftest import require_binary
from tests.services import Mosquitto

SENSORS = 50
CONFIG = """\
sites: [{{id: skolan, name: Skolan}}]
gateway:
  id: pi-soak
  site: skolan
  mqtt_brokers: {{lan: {{host: 127.0.0.1, port: {port}}}}}
  uplink: {{host: 127.0.0.1, port: {port}, status_every: 10}}
  outbox: {{path: outbox.db}}
  quarantine: null
  clock: {{sync: "off"}}
sensors:
{sensors}
"""


def sample(pid: int, outbox: Path) -> tuple[float, int, int]:
    """(resident MB, open descriptors, outbox bytes on disk) of the gateway now."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    size = sum(p.stat().st_size for p in outbox.parent.glob(outbox.name + "*") if p.is_file())
    return rss, fds, size


class _Uplinked:
    """Counts the sensors' readings the gateway uplinks (not the probe's)."""

    def __init__(self, readings: int) -> None:
        self.readings, self.seen = readings, 0
        self.probed, self.drained = asyncio.Event(), asyncio.Event()

    async def count(self, host: str, port: int) -> None:
        async with aiomqtt.Client(host, port, identifier="soak-counter") as client:
            await client.subscribe("husvakt/v1/skolan/pi-soak/readings", qos=1)
            async for message in client.messages:
                payload = bytes(message.payload)
                self.seen += payload.count(b'"sensor":"t')
                if b'"sensor":"probe"' in payload:
                    self.probed.set()
                if self.seen >= self.readings * 0.99:
                    self.drained.set()


async def _probe(client: aiomqtt.Client, probed: asyncio.Event) -> None:
    """Publish a probe reading until one has come through the gateway: then it reads its
    sensors (one subscription for all their topics) and the counter counts."""
    for _ in range(600):
        await client.publish("soak/probe", b"20.0", qos=1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(probed.wait(), 0.1)
            return
    raise RuntimeError("the gateway uplinked no probe reading within a minute")


async def soak(readings: int, rate: float, slack: float) -> tuple[bool, int]:
    """Whether memory and descriptors stayed flat, and how many readings were uplinked."""
    with tempfile.TemporaryDirectory(prefix="husvakt-soak-") as tmp:
        here = Path(tmp)
        broker = Mosquitto.configured(require_binary("mosquitto"), here)
        broker.start()
        config = here / "pi.yaml"
        sensors = "\n".join(
            f"  - {{id: {name}, source: {{type: mqtt, topic: soak/{name}}}}}"
            for name in [*(f"t{i}" for i in range(SENSORS)), "probe"]
        )
        config.write_text(CONFIG.format(port=broker.port, sensors=sensors), encoding="utf-8")
        proc = subprocess.Popen(  # noqa: ASYNC220, S603 - the gateway under test, our own
            [sys.executable, "-m", "husvakt.cli", "gateway", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        uplink = _Uplinked(readings)
        counter = asyncio.create_task(uplink.count(broker.host, broker.port))
        samples: list[tuple[int, float, int, int]] = []
        try:
            async with aiomqtt.Client(broker.host, broker.port, identifier="soak-sensors") as c:
                await _probe(c, uplink.probed)
                started = time.monotonic()
                for i in range(readings):
                    value = 20.0 + (i % 97) / 10
                    await c.publish(f"soak/t{i % SENSORS}", f"{value:.1f}".encode(), qos=1)
                    if i % (readings // 10) == 0:
                        samples.append((i, *sample(proc.pid, here / "outbox.db")))
                    lag = (i + 1) / rate - (time.monotonic() - started)
                    if lag > 0:
                        await asyncio.sleep(lag)
            with contextlib.suppress(TimeoutError):  # until it has uplinked what it read
                await asyncio.wait_for(uplink.drained.wait(), 60.0)
            samples.append((readings, *sample(proc.pid, here / "outbox.db")))
            took = time.monotonic() - started
            uplinked = uplink.seen
        finally:
            counter.cancel()
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            broker.stop()
    hours = readings / SENSORS * 10 / 3600
    print(
        f"\nsoak: {readings:,} readings from {SENSORS} sensors ({hours:.1f} h at the Pi load) "
        f"in {took:.0f} s; {uplinked:,} uplinked ({machine()})\n"
    )
    print("| readings | resident MB | open fds | outbox on disk |")
    print("|---:|---:|---:|---:|")
    for n, rss, fds, size in samples:
        print(f"| {n:,} | {rss:.1f} | {fds} | {size / 1e6:.2f} MB |")
    warm = samples[2]  # after a fifth
    grew = max(s[1] for s in samples[2:]) - warm[1]
    # A descriptor open for a moment when a sample is taken (a WAL checkpoint, a reconnect) is
    # not a leak; a leak stays open, so the fewest open over the last three samples tell it.
    fds_grew = min(s[2] for s in samples[-3:]) - warm[2]
    peak = max(s[2] for s in samples[2:]) - warm[2]
    flat = grew < slack and fds_grew <= 0
    print(
        f"\nafter warm-up: memory +{grew:.1f} MB (slack {slack:g}), descriptors {fds_grew:+d} "
        f"held (a moment's peak {peak:+d}): {'flat' if flat else 'NOT flat'}"
    )
    return flat, uplinked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=432_000, help="a day at the Pi load")
    parser.add_argument("--rate", type=float, default=2000.0, help="readings published per s")
    parser.add_argument("--slack", type=float, default=8.0, help="MB memory may grow")
    args = parser.parse_args()
    flat, uplinked = asyncio.run(soak(args.readings, args.rate, args.slack))
    sys.exit(0 if flat and uplinked >= args.readings * 0.99 else 1)


if __name__ == "__main__":
    main()
