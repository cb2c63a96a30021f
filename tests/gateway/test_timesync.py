"""A Pi boots with a wrong clock (no real-time clock) until NTP syncs: the readings it takes
meanwhile never reach the rules with a wrong time. Tested with Debian's libfaketime: the
gateway runs ten years in the past until its clock steps and says it is synchronised."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from gateway.config import SensorConfig
from gateway.timesync import clock_synced, kernel_synced
from gateway.wire import readings_topic
from husvakt.broker import free_port
from tests.gateway.test_uplink import Receiver

pytestmark = [pytest.mark.mqtt, pytest.mark.e2e, pytest.mark.timeout(120)]

#: Debian's libfaketime (the faketime package), whatever the architecture
LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)


class FakedPi:
    """`husvakt gateway` as a Pi runs it after a boot without a real-time clock: ten years
    behind (Debian's libfaketime) until the test steps the clock and says it is synced."""

    def __init__(self, tmp_path, mosquitto):
        if LIBFAKETIME is None:
            pytest.fail("faketime is not installed; run scripts/test, which installs it")
        self.synced = tmp_path / "synchronized"  # the file systemd-timesyncd writes once in sync
        self.fake = tmp_path / "faketime"
        self.fake.write_text("-3650d\n")  # ten years behind
        self.outbox = tmp_path / "outbox.db"
        self.config = tmp_path / "pi.yaml"
        self.config.write_text(
            "sites: [{id: skolan, name: Skolan}]\n"
            "gateway:\n  id: pi-1\n  site: skolan\n"
            f"  mqtt_brokers: {{lan: {{host: 127.0.0.1, port: {mosquitto.port}}}}}\n"
            f"  uplink: {{host: 127.0.0.1, port: {mosquitto.port}}}\n"
            f"  outbox: {{path: {self.outbox}}}\n  clock: {{sync: {self.synced}}}\n"
            "sensors:\n  - {id: t1, source: {type: mqtt, topic: skolan/t1}}\n",
            encoding="utf-8",
        )
        self.log = tmp_path / "gateway.log"
        self.proc = None

    def start(self):
        env = {**os.environ, "LD_PRELOAD": str(LIBFAKETIME),
               "FAKETIME_TIMESTAMP_FILE": str(self.fake), "FAKETIME_NO_CACHE": "1",
               "DONT_FAKE_MONOTONIC": "1"}  # fmt: skip
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "husvakt.cli", "-v", "gateway", "--config",
                 str(self.config)],
                env=env, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip

    async def logged(self, text, times=1):
        for _ in range(300):
            if self.log.read_text(encoding="utf-8", errors="replace").count(text) >= times:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the gateway never logged {text!r}: {self.log.read_text()[-2000:]}")

    def sync(self):
        self.fake.write_text("+0\n")  # NTP steps the clock …
        self.synced.touch()  # … and timesyncd says so

    async def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(self.proc.wait, 60)
        print(self.log.read_text(errors="replace")[-3000:])


@contextlib.asynccontextmanager
async def receiving(mosquitto):
    receiver = Receiver(mosquitto.host, mosquitto.port, readings_topic("skolan", "pi-1"))
    recv = asyncio.create_task(receiver.run())
    try:
        yield receiver
    finally:
        recv.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recv


async def publish(mosquitto, values):
    """Publish each value to the thermometer, half a second apart; when each was sent."""
    taken = []
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        for value in values:
            taken.append(datetime.now(UTC))
            await client.publish("skolan/t1", value.encode(), qos=1)
            await asyncio.sleep(0.5)
    return taken


async def sync_then_one_more(pi, receiver, mosquitto):
    """The clock syncs and the three held readings arrive; then one taken after the sync
    (when it was taken)."""
    pi.sync()
    await receiver.wait_for(3, timeout=30)
    taken = await publish(mosquitto, ("3.4",))
    await receiver.wait_for(4, timeout=30)
    return taken


def assert_true_times(receiver, taken):
    """The four readings uplinked, in order, each with the time it was taken."""
    got = sorted(receiver.readings.values(), key=lambda r: r["seq"])
    assert [r["value"] for r in got] == [3.1, 3.2, 3.3, 3.4]
    for when, reading in zip(taken, got, strict=True):
        stamp = datetime.fromisoformat(reading["ts"].replace("Z", "+00:00"))
        assert abs((stamp - when).total_seconds()) < 1.5, (when, stamp)  # not 2016


async def test_readings_taken_before_the_clock_syncs_get_their_true_time(tmp_path, mosquitto):
    pi = FakedPi(tmp_path, mosquitto)
    async with receiving(mosquitto) as receiver:
        pi.start()
        try:
            await pi.logged("readings are held")  # it knows its clock is not to be trusted
            await pi.logged("subscribed")
            taken = await publish(mosquitto, ("3.1", "3.2", "3.3"))
            taken += await sync_then_one_more(pi, receiver, mosquitto)
        finally:
            await pi.stop()
    assert_true_times(receiver, taken)


def held_in(outbox):
    with contextlib.closing(sqlite3.connect(outbox)) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM held").fetchone()[0]
        except sqlite3.OperationalError:  # nothing held yet
            return 0


async def test_readings_held_survive_a_crash_before_the_sync_and_come_once(tmp_path, mosquitto):
    pi = FakedPi(tmp_path, mosquitto)
    async with receiving(mosquitto) as receiver:
        pi.start()
        try:
            await pi.logged("subscribed")
            taken = await publish(mosquitto, ("3.1", "3.2", "3.3"))
            # another process's file: polling it is the only signal there is
            for _ in range(300):
                if held_in(pi.outbox) == 3:
                    break
                await asyncio.sleep(0.1)
            assert held_in(pi.outbox) == 3, "the held readings never reached the outbox's file"
            pi.proc.send_signal(signal.SIGKILL)  # a crash (or an update) before the sync
            await asyncio.to_thread(pi.proc.wait, 60)
            pi.start()  # the same boot, the clock still wrong: held on
            await pi.logged("3 readings held from before a restart")
            await pi.logged("subscribed", times=2)
            taken += await sync_then_one_more(pi, receiver, mosquitto)
        finally:
            await pi.stop()
    assert_true_times(receiver, taken)
    # each once: the broker had them acknowledged once held, so it sent none again
    assert [r["value"] for r in receiver.order] == [3.1, 3.2, 3.3, 3.4]
    assert held_in(pi.outbox) == 0


async def test_readings_held_in_an_earlier_boot_are_quarantined_not_sent_with_a_guessed_time(
    tmp_path, monkeypatch
):
    from gateway import service
    from gateway.clock import SystemClock
    from gateway.config import GatewayConfig
    from gateway.outbox import SqliteOutbox
    from gateway.service import Gateway

    outbox = SqliteOutbox(tmp_path / "outbox.db")
    await outbox.open()
    old = json.dumps(["t1", 3.1, None, False])
    now = json.dumps(["t1", 3.3, None, False])
    await outbox.hold([("boot-a", 12.0, old), ("boot-a", 13.0, old)], keep=100)
    mono = time.monotonic()
    await outbox.hold([("boot-b", mono - 60.0, now)], keep=100)
    # a damaged file: rows that are not what the gateway wrote are quarantined, one by one
    damaged = ["{not json", "[1, 2]", '["t1", "NaN?", {}, []]', "[" * 100_000, "\u0000"]
    await outbox.hold([("boot-b", mono - 30.0, text) for text in damaged], keep=100)
    # times no clock of this boot has shown: the future, before the boot, infinity, and text
    # where a number belongs (SQLite stores no NaN: it would be a NULL the table refuses)
    times = [mono + 1e300, -5.0, float("-inf"), float("inf")]
    await outbox.hold([("boot-b", at, now) for at in times], keep=100)
    with contextlib.closing(sqlite3.connect(tmp_path / "outbox.db")) as db, db:
        db.execute("UPDATE held SET mono = 'soon' WHERE id = (SELECT MAX(id) FROM held)")
    monkeypatch.setattr(service, "boot_id", lambda: "boot-b")
    config = GatewayConfig.model_validate(
        {"id": "pi-1", "site": "skolan", "outbox": {"path": str(tmp_path / "outbox.db")},
         "uplink": {"host": "127.0.0.1", "port": 1}, "clock": {"sync": "off"},
         "mqtt_brokers": {"lan": {"host": "127.0.0.1", "port": free_port()}}}
    )  # fmt: skip
    sensor = SensorConfig.model_validate({"id": "t1", "source": {"type": "mqtt", "topic": "x"}})
    gateway = Gateway(config=config, sensors=[sensor], clock=SystemClock(), outbox=outbox)
    stop = asyncio.Event()
    stop.set()  # start, settle what was held, and stop
    await gateway.run(stop)
    assert gateway.quarantine.counts["held-across-reboot"] == 2
    quarantined = gateway.quarantine.counts["held-damaged"] + sum(
        n for reason, n in gateway.quarantine.counts.items() if reason.startswith("normalize")
    )
    assert quarantined == len(damaged) + len(times), gateway.quarantine.counts
    assert outbox.held == 0
    ((_, body),) = await outbox.peek(10)
    reading = json.loads(body)
    assert reading["value"] == 3.3  # this boot's: its true time, a minute ago
    taken = datetime.fromisoformat(reading["ts"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - taken).total_seconds() - 60) < 5
    await outbox.close()


def test_the_ways_to_tell_the_clock_is_synchronised(tmp_path):
    assert clock_synced("off")() is True
    flag = tmp_path / "synced"
    check = clock_synced(str(flag))
    assert check() is False
    flag.touch()
    assert check() is True
    assert kernel_synced() in (True, False, None)  # the kernel's word, whatever this machine's
    assert clock_synced("kernel")() is (kernel_synced() is not False)
