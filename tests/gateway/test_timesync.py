"""A Pi boots with a wrong clock (no real-time clock) until NTP syncs: the readings it takes
meanwhile never reach the rules with a wrong time. Tested with Debian's libfaketime: the
gateway runs ten years in the past until its clock steps and says it is synchronised."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from gateway.timesync import clock_synced, kernel_synced
from gateway.wire import readings_topic
from tests.gateway.test_uplink import Receiver

pytestmark = [pytest.mark.mqtt, pytest.mark.e2e, pytest.mark.timeout(120)]

#: Debian's libfaketime (the faketime package), whatever the architecture
LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)


async def test_readings_taken_before_the_clock_syncs_get_their_true_time(tmp_path, mosquitto):
    if LIBFAKETIME is None:
        pytest.fail("faketime is not installed; run scripts/test, which installs it")
    synced = tmp_path / "synchronized"  # the file systemd-timesyncd writes once in sync
    fake = tmp_path / "faketime"
    fake.write_text("-3650d\n")  # ten years behind
    config = tmp_path / "pi.yaml"
    config.write_text(
        "sites: [{id: skolan, name: Skolan}]\n"
        "gateway:\n  id: pi-1\n  site: skolan\n"
        f"  mqtt_brokers: {{lan: {{host: 127.0.0.1, port: {mosquitto.port}}}}}\n"
        f"  uplink: {{host: 127.0.0.1, port: {mosquitto.port}}}\n"
        f"  outbox: {{path: outbox.db}}\n  clock: {{sync: {synced}}}\n"
        "sensors:\n  - {id: t1, source: {type: mqtt, topic: skolan/t1}}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(fake),
           "FAKETIME_NO_CACHE": "1", "DONT_FAKE_MONOTONIC": "1"}  # fmt: skip
    receiver = Receiver(mosquitto.host, mosquitto.port, readings_topic("skolan", "pi-1"))
    recv = asyncio.create_task(receiver.run())
    log = tmp_path / "gateway.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "husvakt.cli", "-v", "gateway", "--config", str(config)],
            env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip

    async def logged(text):
        for _ in range(300):
            if text in log.read_text(encoding="utf-8", errors="replace"):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the gateway never logged {text!r}: {log.read_text()[-2000:]}")

    try:
        await logged("readings are held")  # it knows its clock is not to be trusted
        await logged("subscribed")
        taken = []
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            for value in ("3.1", "3.2", "3.3"):
                taken.append(datetime.now(UTC))
                await client.publish("skolan/t1", value.encode(), qos=1)
                await asyncio.sleep(0.5)
        fake.write_text("+0\n")  # NTP steps the clock …
        synced.touch()  # … and timesyncd says so
        await receiver.wait_for(3, timeout=30)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            after = datetime.now(UTC)
            await client.publish("skolan/t1", b"3.4", qos=1)
        await receiver.wait_for(4, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 60)
        print(log.read_text(errors="replace")[-3000:])
        recv.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recv
    got = sorted(receiver.readings.values(), key=lambda r: r["seq"])
    stamps = [datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) for r in got]
    assert [r["value"] for r in got] == [3.1, 3.2, 3.3, 3.4]
    for when, stamp in zip([*taken, after], stamps, strict=True):
        assert abs((stamp - when).total_seconds()) < 1.5, (when, stamp)  # not 2016


def test_the_ways_to_tell_the_clock_is_synchronised(tmp_path):
    assert clock_synced("off")() is True
    flag = tmp_path / "synced"
    check = clock_synced(str(flag))
    assert check() is False
    flag.touch()
    assert check() is True
    assert kernel_synced() in (True, False, None)  # the kernel's word, whatever this machine's
    assert clock_synced("kernel")() is (kernel_synced() is not False)
