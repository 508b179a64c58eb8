"""The embedded Tansu broker with the platform's topics."""

from __future__ import annotations

import asyncio

from streaming.topics import TOPICS, ensure_topics


def test_every_topic_exists_with_one_partition_count(kafka_bootstrap, stack_settings):
    from aiokafka.admin import AIOKafkaAdminClient

    async def partitions() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(list(TOPICS))
            return {t["topic"]: len(t["partitions"]) for t in described}
        finally:
            await admin.close()

    counts = asyncio.run(partitions())
    assert set(counts.values()) == {stack_settings.topic_partitions}, counts


def test_ensure_topics_is_idempotent(kafka_bootstrap, stack_settings):
    assert asyncio.run(ensure_topics(kafka_bootstrap, stack_settings.topic_partitions)) == []


def test_produce_and_consume_round_trip(kafka_bootstrap):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def round_trip() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait("deadletter", f"msg-{i}".encode(), key=b"k", partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("deadletter", bootstrap_servers=kafka_bootstrap, group_id="t-roundtrip",
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            got: list[bytes] = []
            while len(got) < 5:
                batch = await consumer.getmany(timeout_ms=2000)
                if not batch:
                    break
                got += [m.value for msgs in batch.values() for m in msgs]
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(round_trip()) == [f"msg-{i}".encode() for i in range(5)]
