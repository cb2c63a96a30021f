"""`husvakt stream`: gateways' uplink on a real broker → rules → cases (embedded and Faust)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime, timedelta

import aiomqtt
import httpx
import pytest

from casebridge.store.sql import SqliteCaseStore
from gateway.config import MqttBrokerConfig
from gateway.models import Reading, format_ts
from gateway.wire import encode_reading
from husvakt.broker import free_port
from husvakt.config import load_config
from husvakt.server import EmbeddedServer
from tests.services import NotifySocket
from tests.stream.faust_helpers import SCHOOL, Worker, write_config

pytestmark = [pytest.mark.mqtt, pytest.mark.e2e]

NOW = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)
TOPIC = "husvakt/v1/nordskolan/pi-basement"


class Clock:
    def __init__(self, now):
        self.value = now

    def now(self):
        return self.value

    async def sleep(self, seconds):
        await asyncio.Event().wait()  # ticks are not what these tests are about


def reading(minute, value, seq, sensor="basement-t1"):
    return Reading(
        site="nordskolan",
        gateway="pi-basement",
        sensor=sensor,
        kind="temperature",
        value=value,
        unit="°C",
        ts=NOW - timedelta(minutes=30 - minute),
        seq=seq,
    )


def batch(readings):
    return json.dumps([json.loads(encode_reading(r)) for r in readings]).encode()


def cold_night():
    return [reading(m, 3.0, m + 1) for m in range(12)]


async def publish(broker, *messages, retain=False):
    async with aiomqtt.Client(broker.host, broker.port, identifier="test-gateway") as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1, retain=retain)


def school_on(broker, directory):
    """The school's config with its stream on `broker` and its files in `directory`."""
    config = load_config(SCHOOL)
    stream = config.stream.model_copy(
        update={
            "broker": MqttBrokerConfig(host=broker.host, port=broker.port),
            "state": directory / "rules.db",
            "quarantine": directory / "quarantine.db",
        }
    )
    return config.model_copy(update={"stream": stream})


@pytest.fixture
async def server(tmp_path, mosquitto):
    config = school_on(mosquitto, tmp_path)
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    server = EmbeddedServer(config=config, clock=Clock(NOW), store=store)
    outcomes: asyncio.Queue = asyncio.Queue()
    handle = server.bridge.handle_many

    async def recording(alarms):
        results = await handle(alarms)
        for pair in zip(alarms, results, strict=True):
            await outcomes.put(pair)
        return results

    server.bridge.handle_many = recording
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    await server.subscriber.subscribed.wait()
    yield server, store, outcomes
    stop.set()
    await task
    await store.aclose()


async def test_uplinked_frost_opens_one_case_and_a_resent_batch_opens_none(server, mosquitto):
    srv, store, outcomes = server
    night = cold_night()
    await publish(
        mosquitto,
        (f"{TOPIC}/readings", b"{not json"),
        (f"{TOPIC}/readings", batch(night[:6])),
        (f"{TOPIC}/readings", batch(night[6:])),
        (f"{TOPIC}/readings", batch(night[4:])),  # sent again after a lost PUBACK
        (f"{TOPIC}/readings", batch([reading(13, 99.0, 20, sensor="boiler-t1")])),
    )
    alarm, outcome = await outcomes.get()
    assert (alarm.sensor, alarm.condition, alarm.state, alarm.late) == (
        "basement-t1",
        "freezing",
        "raised",
        True,  # measured 20 minutes before the rules saw it
    )
    assert outcome.case is not None
    alarm, _ = await outcomes.get()  # the boiler: after the resent batch, so that was handled
    assert alarm.sensor == "boiler-t1"
    assert [c.condition for c in await store.list_cases()] == ["freezing", "fire"]
    assert srv.engine.counts["duplicate"] == len(night[4:])
    assert srv.subscriber.quarantine.counts == {"uplink-not-json": 1}


async def test_a_gateway_last_will_opens_a_gateway_offline_case(server, mosquitto):
    _srv, store, outcomes = server
    await publish(mosquitto, (f"{TOPIC}/readings", batch(cold_night()[:2])))
    offline = json.dumps({"state": "offline", "ts": format_ts(NOW), "buffered": None}).encode()
    await publish(mosquitto, (f"{TOPIC}/status", offline), retain=True)
    alarm, _outcome = await outcomes.get()
    assert (alarm.sensor, alarm.condition, alarm.state) == (
        "pi-basement",
        "gateway_offline",
        "raised",
    )
    online = json.dumps({"state": "online", "ts": format_ts(NOW), "buffered": 0}).encode()
    await publish(mosquitto, (f"{TOPIC}/status", online), retain=True)
    alarm, _ = await outcomes.get()
    assert (alarm.condition, alarm.state) == ("gateway_offline", "cleared")
    (case,) = await store.list_cases()
    kinds = [e.kind for e in await store.timeline(case.id)]
    assert kinds[:3] == ["opened", "alarm_raised", "alarm_cleared"]


@pytest.mark.kafka
@pytest.mark.timeout(300)
async def test_the_faust_deployment_takes_mqtt_uplinks_to_cases(kafka_broker, mosquitto, tmp_path):
    config_path = write_config(tmp_path, kafka_broker.bootstrap)
    text = config_path.read_text(encoding="utf-8").replace(
        "\nstream:\n",
        f"\nstream:\n  broker: {{host: {mosquitto.host}, port: {mosquitto.port}}}\n",
    )
    config_path.write_text(text, encoding="utf-8")
    listen = f"127.0.0.1:{free_port()}"
    systemd = NotifySocket(tmp_path)  # as under its unit (Type=notify, WatchdogSec)
    worker = Worker(config_path, full=True, metrics=listen, env=systemd.env)
    try:
        # its MQTT session must exist before the gateway publishes (as after a first start)
        assert await worker.wait_for_output("uplink subscription active", timeout=60), (
            worker.output()
        )
        # ready once Faust started and the uplink subscribed; the watchdog fed from its loop
        await systemd.pings(2, after=await systemd.hear("READY=1"))
        night = cold_night()
        await publish(
            mosquitto,
            (f"{TOPIC}/readings", b"[1, 2"),
            (f"{TOPIC}/readings", batch(night[:6])),
            (f"{TOPIC}/readings", batch(night[6:])),
        )
        store = SqliteCaseStore(tmp_path / "cases.db")
        deadline = time.monotonic() + 120
        cases = []
        while not cases and time.monotonic() < deadline and worker.proc.poll() is None:
            # another process writes the store: polling it is the only signal there is
            await asyncio.sleep(0.5)
            if (tmp_path / "cases.db").exists():
                await store.start()
                cases = await store.list_cases()
        await store.aclose()
        assert [(c.sensor, c.condition, c.team) for c in cases] == [
            ("basement-t1", "freezing", "facilities")
        ], worker.output()[-4000:]
        async with httpx.AsyncClient(base_url=f"http://{listen}", timeout=10) as http:
            scraped = (await http.get("/metrics")).text
            ready = await http.get("/readyz")
        assert 'husvakt_case_outcomes_total{condition="freezing",result="opened"} 1.0' in scraped
        assert 'husvakt_alarms_total{condition="freezing",state="raised"} 1.0' in scraped
        assert ready.status_code == 200, ready.text
        worker.proc.send_signal(signal.SIGTERM)
        await systemd.hear("STOPPING=1")
    finally:
        worker.stop()
        systemd.close()
    assert "uplink-not-json" in worker.output()


async def test_messages_waiting_at_the_broker_are_settled_together(mosquitto, tmp_path):
    """A stream that comes back to a queue of uplink messages evaluates them all and saves its
    rule state once per group, not once per message, before it acknowledges them."""
    config = school_on(mosquitto, tmp_path)
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()

    async def run_until_fire(server):
        fire = asyncio.Event()
        handle = server.bridge.handle_many

        async def recording(alarms):
            results = await handle(alarms)
            if any(a.condition == "fire" for a in alarms):
                fire.set()
            return results

        server.bridge.handle_many = recording
        stop = asyncio.Event()
        task = asyncio.create_task(server.run(stop))
        await server.subscriber.subscribed.wait()
        await fire.wait()
        stop.set()
        await task

    first = EmbeddedServer(config=config, clock=Clock(NOW), store=store)
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await first.subscriber.subscribed.wait()  # its persistent session exists from now on
    stop.set()
    await task
    night = cold_night()
    last = batch([reading(13, 99.0, len(night) + 1, sensor="boiler-t1")])
    await publish(mosquitto, *[(f"{TOPIC}/readings", batch([r])) for r in night])
    await publish(mosquitto, (f"{TOPIC}/readings", last))
    server = EmbeddedServer(config=config, clock=Clock(NOW), store=store)
    await run_until_fire(server)
    assert server.subscriber.messages == len(night) + 1
    assert server.subscriber.groups < server.subscriber.messages
    assert [c.condition for c in await store.list_cases()] == ["freezing", "fire"]
    await store.aclose()


def test_an_alarm_on_the_topic_of_a_condition_no_rule_decides_opens_nothing():
    from husvakt.server import admit_alarm
    from stream.conditions import Vocabulary
    from stream.config import parse_rule
    from tests.factories import make_alarm

    damp = parse_rule(
        {"id": "damp-cellar", "condition": "damp", "kind": "humidity", "above": 75, "clear": 70}
    )
    known = Vocabulary([damp])
    for condition in ("freezing", "damp", "stream_lag"):
        alarm = make_alarm(condition=condition)
        assert admit_alarm(json.dumps(alarm.to_wire()).encode(), known) == alarm
    forged = json.dumps(make_alarm(condition="evacuate-now").to_wire()).encode()
    with pytest.raises(ValueError, match="'evacuate-now', which no rule here decides"):
        admit_alarm(forged, known)


async def test_readings_by_hand_reach_the_rules_and_nobody_may_speak_for_their_gateway(
    tmp_path, mosquitto
):
    from casebridge.readings import manual_reading

    config = school_on(mosquitto, tmp_path)
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    sensors = config.sensor_index()
    for days in (10, 6, 1):  # the heat meter read by hand, standing still for nine days
        await store.add_manual_reading(
            manual_reading(sensors, site="nordskolan", sensor="heat-m1", value=48000.0,
                           at=NOW - timedelta(days=days), actor="eva", now=NOW)
        )  # fmt: skip
    server = EmbeddedServer(config=config, clock=Clock(NOW), store=store)
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    try:
        await server.subscriber.subscribed.wait()
        forged = [r.model_copy(update={"gateway": "manual", "sensor": "heat-m1", "kind": "heat",
                                       "unit": "kWh"}) for r in cold_night()]  # fmt: skip
        await publish(mosquitto, ("husvakt/v1/nordskolan/manual/readings", batch(forged)))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            cases = await store.list_cases()
            if cases and server.subscriber.quarantine.total:
                break
            await asyncio.sleep(0.05)
        assert [(c.sensor, c.condition) for c in await store.list_cases()] == [
            ("heat-m1", "meter_stopped")
        ]
        assert server.subscriber.quarantine.counts == {"uplink-reserved-gateway": 1}
        assert await store.pending_readings() == []
    finally:
        stop.set()
        await task
        await store.aclose()


async def test_a_restarted_stream_continues_a_hold_from_the_messages_it_journaled(
    mosquitto, tmp_path
):
    """`husvakt stream` settles uplink messages by journaling them (not by writing each sensor
    they touched) and acknowledges them; stopped before its state was written out, the next
    stream takes the journal again, so the frost hold that began before the stop ends in one
    freezing case after it."""
    import sqlite3

    config = school_on(mosquitto, tmp_path)
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    night = cold_night()

    async def serve(parts):
        server = EmbeddedServer(config=config, clock=Clock(NOW), store=store)
        settled, settle = asyncio.Queue(), server.engine.settle

        async def settling():
            await settle()
            await settled.put(server.engine.counts["readings"])

        server.engine.settle = settling
        stop = asyncio.Event()
        task = asyncio.create_task(server.run(stop))
        await server.subscriber.subscribed.wait()
        taken = 0
        for part in parts:
            await publish(mosquitto, (f"{TOPIC}/readings", batch(part)))
            taken += len(part)
            while await settled.get() < taken:  # settled once the rules took the part
                pass
        stop.set()
        await task

    await serve([night[:3], night[3:6]])
    db = sqlite3.connect(tmp_path / "rules.db")
    journaled = db.execute("SELECT COUNT(*) FROM input_journal").fetchone()[0]
    db.close()
    assert journaled >= 1
    assert await store.list_cases() == []  # 5 minutes of frost: the hold has not ended
    await serve([night[6:]])
    cases = await store.list_cases()
    assert [(c.condition, c.sensor) for c in cases] == [("freezing", "basement-t1")]
    # the frost began with the first stream's first reading, not with the second stream
    assert cases[0].episode.endswith(night[0].ts.strftime("%Y%m%dT%H%M%SZ")), cases[0].episode
    await store.aclose()
