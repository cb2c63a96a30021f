"""Creating the Kafka topics the engine uses, with the partition count of its state table.

Faust would declare them itself, but a broker that creates topics on first use may give them
its own partition count; the readings topic and the table's changelog must agree.
"""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stream.config import KafkaConfig

__all__ = ["ensure_topics", "existing_topics", "topic_names"]

log = logging.getLogger("husvakt.stream.kafka")


def topic_names(kafka: KafkaConfig) -> list[str]:
    """The readings and alarms topics and the rule-state table's changelog."""
    return [kafka.readings_topic, kafka.alarms_topic, f"{kafka.app_id}-rule-state-changelog"]


async def existing_topics(bootstrap: str, *, timeout_ms: int = 10_000) -> set[str]:
    """The topics Kafka at `bootstrap` has (raises when it does not answer)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def ensure_topics(kafka: KafkaConfig) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topic_names(kafka) if t not in existing]
        if wanted:
            # another worker starting at the same time may have created them meanwhile
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, kafka.partitions, kafka.replication) for t in wanted]
                )
            log.info("created topics %s with %d partitions", wanted, kafka.partitions)
        return wanted
    finally:
        await admin.close()
