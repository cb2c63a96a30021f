"""`husvakt doctor`: one line per broker, device, port, probe, store and server the config
names — ok, or what to fix — against real ones (mosquitto, a simulated Modbus device, a pty,
a 1-Wire file, SQLite, an SMTP server, a webhook's host) and ones that are not there."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from aiosmtpd.controller import Controller

from firmware_sim.modbus import ModbusThermometer
from firmware_sim.play import Playback
from firmware_sim.scenario import Scenario
from gateway.clock import SystemClock
from husvakt.broker import free_port

pytestmark = [pytest.mark.mqtt, pytest.mark.modbus]

CONFIG = """\
sites: [{{id: skolan, name: Skolan}}]
gateway:
  id: pi-1
  site: skolan
  mqtt_brokers:
    lan: {{host: 127.0.0.1, port: {mqtt}}}
    gone: {{host: 127.0.0.1, port: {nothing}}}
  uplink: {{host: 127.0.0.1, port: {mqtt}}}
  modbus_devices:
    plc: {{host: 127.0.0.1, port: {plc}, timeout: 1}}
    dead: {{host: 127.0.0.1, port: {nothing}, timeout: 1}}
  serial_ports:
    line: {{path: {pty}}}
    unplugged: {{path: {tmp}/ttyUSB9}}
  onewire: {{base: {tmp}/w1}}
sensors:
  - {{id: t1, source: {{type: modbus, device: plc, address: 0}}}}
  - {{id: t2, source: {{type: onewire, device: 28-000005e2fdc3}}}}
  - {{id: t3, source: {{type: onewire, device: 28-0000deadbeef}}}}
  - {{id: m1, kind: heat, unit: kWh, source: {{type: manual}}}}
teams:
  - {{id: fm, name: FM, members: [eva], webhook: {{url: "http://127.0.0.1:{hook}/husvakt"}}}}
routing: [{{id: all, team: fm}}]
cases: {{sqlite: {tmp}/cases.db}}
notify: {{smtp: {{host: 127.0.0.1, port: {smtp}}}}}
"""


class Quiet:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        return "250 OK"


async def test_doctor_says_what_is_there_and_what_to_fix(tmp_path, mosquitto):
    start = datetime.now(UTC)
    scenario = Scenario.single("t", start=start, signal={"baseline": 21.5}, protocol="modbus")
    plc_port = free_port()
    plc = ModbusThermometer(host="127.0.0.1", port=plc_port,
                            playback=Playback(scenario.device_outputs(0)), clock=SystemClock())  # fmt: skip
    await plc.start()
    main, follower = os.openpty()
    probe = tmp_path / "w1" / "28-000005e2fdc3"
    probe.mkdir(parents=True)
    (probe / "w1_slave").write_text("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n"
                                    "72 01 4b 46 7f ff 0e 10 57 t=23125\n")  # fmt: skip
    smtp_port = free_port()
    smtp = Controller(Quiet(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    hook = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    hook_port = hook.sockets[0].getsockname()[1]
    config = tmp_path / "husvakt.yaml"
    config.write_text(CONFIG.format(mqtt=mosquitto.port, nothing=free_port(), plc=plc_port,
                                    pty=os.ttyname(follower), tmp=tmp_path, smtp=smtp_port,
                                    hook=hook_port), encoding="utf-8")  # fmt: skip
    try:
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "husvakt.cli", "doctor", "--config", str(config)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        hook.close()
        smtp.stop()
        await plc.stop()
        os.close(main)
        os.close(follower)
    lines = {line.split(":")[0].split("  ", 1)[1].strip(): line for line in out.stdout.splitlines()
             if line.startswith(("ok", "FAIL"))}  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    for name in ("mqtt broker lan", "uplink broker", "modbus device plc (127.0.0.1",
                 "serial port line", "1-wire probe t2", "case store", "smtp server",
                 "webhook of team fm", "read by hand"):  # fmt: skip
        line = next(v for k, v in lines.items() if k.startswith(name))
        assert line.startswith("ok"), line
    assert (
        "read holding register 0: 215"
        in lines[next(k for k in lines if k.startswith("modbus device plc"))]
    )
    failed = {
        "mqtt broker gone": "check host, port, username, password_file and TLS",
        "modbus device dead": "check the address, the device id",
        "serial port unplugged": "that this user is in the dialout group",
        "1-wire probe t3": "dtoverlay=w1-gpio",
    }
    for name, fix in failed.items():
        line = next(v for k, v in lines.items() if k.startswith(name))
        assert line.startswith("FAIL") and fix in line, line
    assert out.stdout.rstrip().endswith("9 ok, 4 failed")
    assert "Traceback" not in out.stderr and "exception" not in out.stderr


SERVER = """\
sites: [{{id: skolan, name: Skolan}}]
sensors:
  - {{id: t1, site: skolan, gateway: pi-1, source: {{type: mqtt, topic: skolan/t1}}}}
teams: [{{id: fm, name: FM, members: [eva]}}]
routing: [{{id: all, team: fm}}]
cases: {{sqlite: {tmp}/cases.db}}
stream:
  broker: {{host: 127.0.0.1, port: {mqtt}}}
  engine: faust
  kafka: {{bootstrap: "{kafka}", readings_topic: {topic}-readings, alarms_topic: {topic}-alarms}}
  influx: {{url: "http://127.0.0.1:{nothing}"}}
sinks:
  - {{id: feed, type: webhook, url: "http://127.0.0.1:{hook}/feed"}}
"""

PI_ON_KAFKA = """\
sites: [{{id: skolan, name: Skolan}}]
gateway:
  id: pi-1
  site: skolan
  uplink: {{kafka: "{kafka}", kafka_topic: {topic}}}
sensors: []
"""


@pytest.mark.kafka
async def test_doctor_checks_what_a_server_and_a_kafka_gateway_name(
    tmp_path, mosquitto, kafka_broker
):
    # a server's file: the broker husvakt stream subscribes to, Kafka (whose topics husvakt
    # stream makes), InfluxDB (not there) and a webhook sink; a gateway uplinking to Kafka
    # whose topic nobody made
    hook = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    server = tmp_path / "server.yaml"
    server.write_text(SERVER.format(tmp=tmp_path, mqtt=mosquitto.port, kafka=kafka_broker.bootstrap,
                                    topic=f"d{os.getpid()}", nothing=free_port(),
                                    hook=hook.sockets[0].getsockname()[1]), encoding="utf-8")  # fmt: skip
    pi = tmp_path / "pi.yaml"
    pi.write_text(PI_ON_KAFKA.format(kafka=kafka_broker.bootstrap, topic=f"none{os.getpid()}"),
                  encoding="utf-8")  # fmt: skip

    def doctor(path):
        return subprocess.run([sys.executable, "-m", "husvakt.cli", "doctor", "--config", str(path)],
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip

    try:
        said = [await asyncio.to_thread(doctor, path) for path in (server, pi)]
    finally:
        hook.close()
    on_server, on_pi = (out.stdout + out.stderr for out in said)
    assert said[0].returncode == 1 and said[1].returncode == 1, on_server + on_pi
    assert f"ok    stream broker: connected to 127.0.0.1:{mosquitto.port}" in on_server
    assert f"ok    stream kafka: {kafka_broker.bootstrap} answers; husvakt stream makes" in (
        on_server
    )
    assert "ok    sink feed: 127.0.0.1:" in on_server
    assert "FAIL  influxdb:" in on_server and "check stream.influx.url" in on_server
    assert "FAIL  uplink kafka:" in on_pi and f"has no topic none{os.getpid()}" in on_pi
    for out in said:
        assert "Traceback" not in out.stderr, out.stderr
