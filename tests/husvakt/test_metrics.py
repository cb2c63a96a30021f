"""A running gateway says how it is: Prometheus metrics, `/healthz` and `/readyz` on
`--metrics`, scraped by a real Prometheus (Debian's), from a Pi's gateway-only config."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import aiomqtt
import httpx
import pytest

from husvakt.broker import free_port
from husvakt.metrics import parse_listen
from tests.conftest import require_binary
from tests.services import Prometheus

pytestmark = [pytest.mark.mqtt, pytest.mark.e2e, pytest.mark.timeout(180)]

PI = """\
sites: [{{id: skolan, name: Skolan}}]
gateway:
  id: pi-1
  site: skolan
  mqtt_brokers: {{lan: {{host: 127.0.0.1, port: {mqtt}}}}}
  uplink: {{host: 127.0.0.1, port: {mqtt}, status_every: {status_every}}}
  outbox: {{path: outbox.db}}
sensors:
  - {{id: t1, source: {{type: mqtt, topic: skolan/t1}}}}
  - {{id: t2, source: {{type: mqtt, topic: skolan/t2}}}}
"""


async def until(check, what, timeout=30.0):
    """Poll `check` (an async callable returning a value or None) until it returns a value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def sample(text, name, **labels):
    """The value of one sample in Prometheus' text format (None: not there)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()) and (
            head == name or head.startswith(name + "{")
        ):
            return float(value)
    return None


def start_gateway(tmp_path, mosquitto, status_every=1):
    """`husvakt gateway` of the Pi config with `--metrics` on a free port: (process, listen
    address, the metrics port's base URL)."""
    config = tmp_path / "pi.yaml"
    config.write_text(PI.format(mqtt=mosquitto.port, status_every=status_every), encoding="utf-8")
    listen = f"127.0.0.1:{free_port()}"
    base = "http://{}:{}".format(*parse_listen(listen))
    proc = subprocess.Popen(
        [sys.executable, "-m", "husvakt.cli", "gateway", "--config", str(config),
         "--metrics", listen],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    return proc, listen, base


async def test_a_gateway_serves_metrics_health_and_readiness_that_prometheus_scrapes(
    tmp_path, mosquitto
):
    proc, listen, base = start_gateway(tmp_path, mosquitto)
    prometheus = Prometheus(require_binary("prometheus"), [listen])
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:

            async def get(path):
                try:
                    return await http.get(path)
                except httpx.TransportError:
                    return None

            health = await until(lambda: get("/healthz"), "/healthz")
            assert health.status_code == 200 and health.text == "ok\n"

            async def ready():
                answer = await get("/readyz")
                return answer if answer is not None and answer.status_code == 200 else None

            await until(ready, "/readyz to say ready (the uplink connected)")
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
                await client.publish("skolan/t1", b"3.5", qos=1)
                await client.publish("skolan/t2", b"not a number", qos=1)

            async def scraped():
                text = (await http.get("/metrics")).text
                uplinked = sample(text, "husvakt_uplink_readings_total")
                return text if uplinked and uplinked >= 2 else None

            text = await until(scraped, "both readings uplinked")
            assert sample(text, "husvakt_gateway_readings_total", quality="good") == 1
            assert sample(text, "husvakt_gateway_readings_total", quality="fault") == 1
            assert sample(text, "husvakt_source_up", source="mqtt:lan") == 0  # latest: a fault
            assert sample(text, "husvakt_uplink_connected") == 1
            assert sample(text, "husvakt_gateway_unsynced_readings") == 0  # its clock is synced
            assert sample(text, "husvakt_outbox_readings") is not None
            assert sample(text, "husvakt_uplink_latency_seconds_count") >= 1
            assert sample(text, "husvakt_uplink_last_ack_timestamp_seconds") > 1.7e9
        prometheus.start()
        async with httpx.AsyncClient(base_url=prometheus.url, timeout=5) as prom:

            async def queried():
                answer = await prom.get(
                    "/api/v1/query", params={"query": "husvakt_uplink_connected"}
                )
                result = answer.json().get("data", {}).get("result", [])
                return result if result else None

            (series,) = await until(queried, "Prometheus to scrape the gateway", timeout=60)
            assert series["value"][1] == "1"
            assert series["metric"]["job"] == "husvakt"
        mosquitto.stop()  # the broker goes away: the gateway is alive, and not ready

        async def not_ready():
            answer = await get_once(base, "/readyz")
            return answer if answer is not None and answer.status_code == 503 else None

        answer = await until(not_ready, "/readyz to say not ready")
        assert "uplink not connected" in answer.text
        assert (await get_once(base, "/healthz")).status_code == 200
    finally:
        prometheus.stop()
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 0, err.decode()


async def test_an_idle_gateway_is_not_ready_as_soon_as_its_uplink_broker_goes(tmp_path, mosquitto):
    # No readings, and the next status an hour away: nothing is published, so only the
    # connection itself can tell the gateway that the broker went. /readyz says so at once,
    # and ready again once the broker is back.
    proc, _, base = start_gateway(tmp_path, mosquitto, status_every=3600)

    async def readyz(code):
        answer = await get_once(base, "/readyz")
        return answer if answer is not None and answer.status_code == code else None

    try:
        await until(lambda: readyz(200), "/readyz to say ready (the uplink connected)")
        mosquitto.stop()
        answer = await until(lambda: readyz(503), "/readyz to say not ready", timeout=10)
        assert "uplink not connected" in answer.text
        mosquitto.start()
        await until(lambda: readyz(200), "ready again with the broker back")
        await one_reading_uplinked(mosquitto, base, "on the new connection")
    finally:
        await stopped_cleanly(proc)


async def one_reading_uplinked(mosquitto, base, when):
    """A thermometer's reading, and the gateway's metrics say it went up."""
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        await client.publish("skolan/t1", b"3.5", qos=1)

    async def uplinked():
        text = (await get_once(base, "/metrics")).text
        return sample(text, "husvakt_uplink_readings_total") == 1 or None

    await until(uplinked, f"the reading uplinked {when}")


async def stopped_cleanly(proc):
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 0, err.decode()


async def get_once(base, path):
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        try:
            return await http.get(path)
        except httpx.TransportError:
            return None


def test_a_bad_metrics_address_is_refused_with_the_reason(tmp_path):
    config = tmp_path / "pi.yaml"
    config.write_text(PI.format(mqtt=1883, status_every=1), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "husvakt.cli", "gateway", "--config", str(config),
         "--metrics", "localhost"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 1 and "give HOST:PORT" in out.stderr


async def test_log_lines_as_json_carry_component_site_and_gateway(tmp_path):
    import json

    config = tmp_path / "pi.yaml"
    config.write_text(
        PI.format(mqtt=free_port(), status_every=1), encoding="utf-8"
    )  # no broker there
    proc = subprocess.Popen(
        [sys.executable, "-m", "husvakt.cli", "--log-format", "json", "-v", "gateway",
         "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    lines = []
    try:
        while not any("unavailable" in line for line in lines):
            line = await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), 30)
            assert line, "the gateway ended"
            lines.append(line.decode())
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.communicate, timeout=60)
    records = [json.loads(line) for line in lines]  # every line one JSON object
    started = next(r for r in records if "sources" in r["message"])
    assert started["component"] == "husvakt.gateway" and started["level"] == "INFO"
    assert (started["site"], started["gateway"]) == ("skolan", "pi-1")
    assert started["ts"].startswith("20")
    warned = next(r for r in records if "unavailable" in r["message"])
    assert warned["level"] == "WARNING" and warned["gateway"] == "pi-1"


async def test_hostile_requests_to_the_metrics_port_stop_nothing(tmp_path, mosquitto):
    """Unknown paths, a header of 100 KB, a NUL in the path, a flood of scrapes: the gateway
    answers or refuses each, and a reading still goes up afterwards."""
    proc, listen, base = start_gateway(tmp_path, mosquitto)
    try:
        await until(lambda: get_once(base, "/readyz"), "the metrics port")
        host, port = parse_listen(listen)
        # h11 refuses a header block over 16 KB only while it is incomplete: whether 100 KB
        # arrive in one read or several is the kernel's choice, so that one may be answered
        # (200) or refused (431) — either way the process goes on
        for raw, answers in (
            (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", (b"HTTP/1.1 4",)),
            (b"GET /metrics\x00 HTTP/1.1\r\nHost: x\r\n\r\n", (b"HTTP/1.1 4",)),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 100_000 + b"\r\n\r\n",
             (b"HTTP/1.1 4", b"HTTP/1.1 200")),
            (b"\xff\xfe garbage \r\n\r\n", (b"HTTP/1.1 4",)),
        ):  # fmt: skip
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(raw)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(200), 10)
            assert answer == b"" or answer.startswith(answers), answer
            writer.close()
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            scrapes = await asyncio.gather(*(http.get("/metrics") for _ in range(200)))
            assert {s.status_code for s in scrapes} == {200}
        await one_reading_uplinked(mosquitto, base, "after the hostile requests")
    finally:
        await stopped_cleanly(proc)
