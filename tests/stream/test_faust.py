"""The Faust engine on a real Kafka-protocol broker (Tansu): same alarms as the embedded
engine, and state that survives a crashed worker."""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from husvakt.broker import free_port
from husvakt.config import load_config
from husvakt.replay import VirtualClock, arrivals_from_scenario, load_scenario_file
from stream.core import decode_track
from stream.engine import EmbeddedEngine
from stream.kafka_admin import ensure_topics
from stream.table import RuleTable
from tests.services import NotifySocket
from tests.stream.faust_helpers import (
    ROOT,
    SCHOOL,
    Message,
    Worker,
    batches,
    consume_alarms,
    fire,
    order,
    produce,
    write_config,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

SCENARIOS = ROOT / "config" / "scenarios"
TICK = timedelta(minutes=5)


def night() -> list[Message]:
    """Two gateways' nights: a 40-minute uplink outage with frost measured meanwhile (late
    alarms, gateway offline), and DS18B20 faults on another gateway; clock ticks every 5
    minutes; and, last, a sentinel fire per gateway that says "everything before me is done"."""
    config = load_config(SCHOOL)
    counts: Counter[str] = Counter()
    backlog = arrivals_from_scenario(
        load_scenario_file(SCENARIOS / "gateway-offline-backlog.yaml"), config, counts
    )
    faults = [
        (
            a.at,
            a.reading.model_copy(update={"gateway": "pi-attic", "sensor": f"{a.reading.sensor}-2"}),
        )
        for a in arrivals_from_scenario(
            load_scenario_file(SCENARIOS / "ds18b20-faults.yaml"), config, counts
        )
    ]
    arrivals = sorted([(a.at, a.reading) for a in backlog] + faults, key=lambda x: x[0])
    messages = batches(arrivals, 10)
    start, end = messages[0][0], messages[-1][0]
    keys = sorted({key for _, key, _ in messages})
    ticks: list[Message] = []
    t = start + TICK
    while t < end:
        ticks += [(t, key, None) for key in keys]
        t += TICK
    merged = sorted(messages + ticks, key=lambda m: (m[0], m[2] is not None))
    for site, gateway in keys:
        assert site == "nordskolan"
        sentinel = fire(end, f"sentinel-{gateway}", seq=10**9, gateway=gateway)
        merged.append((end, (site, gateway), [sentinel]))
    return merged


async def embedded_alarms(config_path, messages):
    config = load_config(config_path)
    clock = VirtualClock(messages[0][0])
    got = []

    async def sink(alarms):
        got.extend(alarms)

    engine = EmbeddedEngine(
        table=RuleTable(config.rules, config.sensor_index()),
        clock=clock,
        sink=sink,
        late_after=config.stream.late_after,
        watch_gateways=True,
    )
    ticked = None
    for at, _, readings in messages:
        clock.value = at
        if readings is not None:
            await engine.process_batch(readings)
        elif at != ticked:
            await engine.tick()
            ticked = at
    return sorted(got, key=order)


async def test_one_trace_gives_the_same_alarms_through_both_engines(kafka_broker, tmp_path):
    config_path = write_config(tmp_path, kafka_broker.bootstrap)
    kafka = load_config(config_path).stream.kafka
    messages = night()
    expected = await embedded_alarms(config_path, messages)
    conditions = Counter(a.condition for a in expected)
    # the trace exercises what it should: late frost, gateway offline, faults
    assert conditions["freezing"] and conditions["gateway_offline"] and conditions["sensor_fault"]
    assert any(a.late for a in expected)

    await ensure_topics(kafka)
    await produce(kafka_broker.bootstrap, kafka.readings_topic, messages)
    worker = Worker(config_path)
    try:
        got = await consume_alarms(
            kafka_broker.bootstrap,
            kafka.alarms_topic,
            sentinels={"sentinel-pi-basement", "sentinel-pi-attic"},
        )
    finally:
        worker.stop()
    assert got == expected, worker.output()[-3000:]


async def changelog_reaches(bootstrap, topic, key, seq, timeout=120.0):
    """Wait until the rule-state changelog holds `key` at `seq` or beyond."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            while True:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        if (
                            record.key == key
                            and record.value
                            and decode_track(record.value).max_seq >= seq
                        ):
                            return
    finally:
        await consumer.stop()


async def test_a_crashed_worker_is_replaced_and_the_rules_continue_where_they_were(
    kafka_broker, tmp_path
):
    config_path = write_config(tmp_path, kafka_broker.bootstrap)
    kafka = load_config(config_path).stream.kafka
    messages = night()
    expected = await embedded_alarms(config_path, messages)
    # Cut while the basement's frost is pending (held back by the 10-minute hold) and the
    # attic has fault runs going: the second worker must continue both.
    cut = next(
        i
        for i, (at, key, readings) in enumerate(messages)
        if readings and key[1] == "pi-basement" and readings[-1].ts.hour == 3 and at.minute >= 45
    )
    first, rest = messages[:cut], messages[cut:]
    last_basement = max(r.seq for _, key, rs in first if rs and key[1] == "pi-basement" for r in rs)

    await ensure_topics(kafka)
    await produce(kafka_broker.bootstrap, kafka.readings_topic, first)
    crashed = Worker(config_path)
    try:
        await changelog_reaches(
            kafka_broker.bootstrap,
            f"{kafka.app_id}-rule-state-changelog",
            b"nordskolan/pi-basement",
            last_basement,
        )
    finally:
        crashed.kill()
    await produce(kafka_broker.bootstrap, kafka.readings_topic, rest)
    replacement = Worker(config_path)
    try:
        got = await consume_alarms(
            kafka_broker.bootstrap,
            kafka.alarms_topic,
            sentinels={"sentinel-pi-basement", "sentinel-pi-attic"},
        )
    finally:
        replacement.stop()
    assert got == expected, replacement.output()[-3000:]
    # the replacement rebuilt the rule state from the changelog the crashed worker wrote
    highwaters = re.findall(r"rule-state-changelog \| (\d+)\s+\| (-?\d+)", replacement.output())
    assert any(int(mark) > 0 for _, mark in highwaters), replacement.output()[:3000]


async def test_hostile_messages_on_the_readings_topic_stop_no_worker(kafka_broker, tmp_path):
    """The Faust path decodes with the same bounded wire module: every hostile message is
    quarantined, and a genuine fire sent after them still raises its alarm."""
    from datetime import UTC, datetime

    from aiokafka import AIOKafkaProducer

    from gateway.wire import encode_batch, kafka_key
    from husvakt.hostile import corpus

    config_path = write_config(tmp_path, kafka_broker.bootstrap)
    kafka = load_config(config_path).stream.kafka
    await ensure_topics(kafka)
    now = datetime.now(UTC)
    key = kafka_key("nordskolan", "pi-basement")
    hostile = [
        (b"s/../x" if h.topic.endswith("/status") and h.kind == "wrong shape" else key, h.payload)
        for h in corpus("nordskolan", "pi-basement", "basement-t1", now=now)
        if len(h.payload) < 900_000  # Tansu's default message size
    ]
    hostile += [(b"\xff\xfe", b"[]"), (b"nordskolan/ghost-gw", b"[]"), (b"no-slash", b"{}")]
    sentinel = fire(now, "sentinel-pi-basement", seq=10**9 + 10**8)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_broker.bootstrap, acks="all", max_request_size=1_048_576
    )
    await producer.start()
    try:
        for k, value in [*hostile, (key, encode_batch([sentinel], outbox="ob-hostile"))]:
            await producer.send_and_wait(kafka.readings_topic, key=k, value=value)
    finally:
        await producer.stop()
    # the worker as its unit runs it: told by systemd's socket, its metrics on a port
    systemd = NotifySocket(tmp_path)
    listen = f"127.0.0.1:{free_port()}"
    worker = Worker(config_path, env={**systemd.env, "HUSVAKT_METRICS": listen})
    try:
        await systemd.pings(2, after=await systemd.hear("READY=1"))
        got = await consume_alarms(
            kafka_broker.bootstrap, kafka.alarms_topic, sentinels={"sentinel-pi-basement"}
        )
        alive = worker.proc.poll() is None
        async with httpx.AsyncClient(base_url=f"http://{listen}", timeout=10) as http:
            ready = await http.get("/readyz")
            scraped = (await http.get("/metrics")).text
        worker.proc.send_signal(signal.SIGTERM)
        await systemd.hear("STOPPING=1")
    finally:
        worker.stop()
        systemd.close()
    assert ready.status_code == 200, ready.text
    assert 'husvakt_alarms_total{condition="fire",state="raised"}' in scraped
    assert 'husvakt_quarantined_total{component="stream",reason="kafka-too-deep"}' in scraped
    output = worker.output()
    assert ("sentinel-pi-basement", "fire", "raised") in {
        (a.sensor, a.condition, a.state) for a in got
    }, output[-3000:]
    assert alive, output[-3000:]
    for reason in ("kafka-too-deep", "kafka-not-json", "reading-number", "unknown-sensor"):
        assert f"× {reason}" in output, reason


async def changelog(bootstrap, topic):
    """Every record of the topic, from its start to its end now: (key, value)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(60):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=200)
            ends = await consumer.end_offsets(list(consumer.assignment()))
            for tp, end in ends.items():
                while await consumer.position(tp) < end:
                    for got in (await consumer.getmany(tp, timeout_ms=1000)).values():
                        records += [(r.key, r.value) for r in got]
    finally:
        await consumer.stop()
    return records


async def test_a_backlog_is_evaluated_in_groups_each_writing_the_state_once(kafka_broker, tmp_path):
    """A worker that finds uplink batches waiting takes them together and writes each
    sensor's state once a group, not once a message: the changelog of a backlog of 40
    messages of 200 readings over 100 sensors holds a fraction of the 40 × 101 records a write
    per message makes (Kafka traffic an operator sees, and what held a worker to 19k
    readings/s) — and every reading was applied, the fire after them raised."""
    from datetime import UTC, datetime

    names = [f"g{i}" for i in range(100)]
    config_path = write_config(tmp_path, kafka_broker.bootstrap, sensors=[*names, "sentinel"])
    kafka = load_config(config_path).stream.kafka
    await ensure_topics(kafka)
    start = datetime(2026, 1, 15, tzinfo=UTC)
    messages: list[Message] = []
    seq = 0
    for m in range(40):
        readings = []
        for r in range(2):
            at = start + timedelta(seconds=10 * (2 * m + r))
            for name in names:
                seq += 1
                value = 20.0 + (seq % 7) / 10
                readings.append(fire(at, name, seq=seq).model_copy(update={"value": value}))
        messages.append((readings[-1].ts, ("nordskolan", "pi-basement"), readings))
    end = start + timedelta(seconds=10 * 80)
    messages.append((end, ("nordskolan", "pi-basement"), [fire(end, "sentinel", seq=seq + 1)]))
    await produce(kafka_broker.bootstrap, kafka.readings_topic, messages, max_batch_size=1 << 20)
    worker = Worker(config_path)
    try:
        got = await consume_alarms(
            kafka_broker.bootstrap, kafka.alarms_topic, sentinels={"sentinel"}, timeout=120
        )
    finally:
        worker.stop()
    raised = [(a.sensor, a.condition, a.state) for a in got]
    assert raised == [("sentinel", "fire", "raised")], worker.output()[-3000:]
    records = await changelog(kafka_broker.bootstrap, f"{kafka.app_id}-rule-state-changelog")
    gateway = [value for key, value in records if key == b"nordskolan/pi-basement"]
    assert decode_track(gateway[-1]).max_seq == seq + 1  # every reading applied
    assert len(records) <= 40 * 101 // 4, len(records)


@pytest.mark.parametrize("listen", ["localhost", ":99999", "127.0.0.1:0", "[::1:x", "9" * 5000])
def test_a_bad_metrics_address_for_a_worker_is_refused_with_the_reason(tmp_path, listen):
    import subprocess
    import sys

    config = write_config(tmp_path, "127.0.0.1:1")
    env = {"HUSVAKT_CONFIG": str(config), "HUSVAKT_METRICS": listen, "PATH": ""}
    out = subprocess.run([sys.executable, "-c", "import husvakt.faust_app"], env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "husvakt: HUSVAKT_METRICS" in out.stderr and "give HOST:PORT" in out.stderr
    assert "Traceback" not in out.stderr
