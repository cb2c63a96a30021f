"""The gateway's Kafka uplink, against a real Kafka-protocol broker (Tansu)."""

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer

from gateway.config import UplinkConfig
from gateway.outbox import SqliteOutbox
from gateway.uplink import KafkaUplink
from stream.config import KafkaConfig
from stream.kafka_admin import ensure_topics
from tests.factories import make_reading

pytestmark = pytest.mark.kafka


class Clock:
    def now(self):
        return datetime(2026, 1, 15, 2, 0, tzinfo=UTC)

    async def sleep(self, seconds):
        await asyncio.sleep(seconds)


async def test_batches_reach_the_readings_topic_and_leave_the_outbox_only_then(
    kafka_broker, tmp_path
):
    topic = f"t{uuid.uuid4().hex[:8]}-readings"
    await ensure_topics(
        KafkaConfig(
            bootstrap=kafka_broker.bootstrap,
            readings_topic=topic,
            alarms_topic=f"{topic}-alarms",
            partitions=2,
        )
    )
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    await outbox.open()
    await outbox.append([make_reading(m, 20.0 + m / 10) for m in range(250)])
    config = UplinkConfig(kafka=kafka_broker.bootstrap, kafka_topic=topic, batch=100)
    uplink = KafkaUplink(config=config, site="s", gateway="g", clock=Clock())
    latencies = []
    uplink.on_ack = latencies.append
    assert not uplink.connected and uplink.last_ack is None
    task = asyncio.create_task(uplink.run(outbox))
    await outbox.emptied.wait()
    # what the metrics and /readyz read: connected, Kafka's last acknowledgement, the latency
    assert uplink.connected and uplink.published == 250
    assert uplink.last_ack == Clock().now().timestamp()
    assert len(latencies) == 3 and all(s >= 0 for s in latencies)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not uplink.connected
    await outbox.close()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    messages = []
    try:
        async with asyncio.timeout(60):
            while sum(len(m.get("readings", [])) for m in messages) < 250:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        assert record.key == b"s/g"
                        messages.append(json.loads(record.value))
    finally:
        await consumer.stop()
    assert messages[0] == {  # the same status shape as on MQTT
        "status": {
            "state": "online",
            "ts": "2026-01-15T02:00:00Z",
            "buffered": None,
            "thinned": None,
            "dropped": None,
            "lag": None,
        }
    }
    batches = [m["readings"] for m in messages if "readings" in m]
    assert [len(b) for b in batches] == [100, 100, 50]  # one message per uplink batch
    assert [r["seq"] for b in batches for r in b] == list(range(1, 251))
