"""Every topic the platform uses, created explicitly with one partition count.

One count for all topics matters: Faust refuses to start (PartitionsMismatch) when a source topic and
its table changelog differ, and brokers that auto-create topics pick their own count.
"""

from __future__ import annotations

TOPICS: dict[str, str] = {
    "market.ticks": "trades printed by venues, keyed by symbol",
    "market.quotes": "best bid/offer, keyed by symbol",
    "market.bars": "OHLCV bars, keyed by symbol",
    "signals": "strategy signals, keyed by symbol",
    "orders.requests": "order requests after strategy, before risk, keyed by account",
    "orders.events": "order lifecycle events (new/ack/fill/cancel/reject), keyed by account",
    "executions": "fills, keyed by account",
    "positions": "position snapshots, keyed by account",
    "risk.alerts": "risk state transitions and breaker trips, keyed by account",
    "control": "kill switch, resume, strategy swap, limit changes, keyed by account",
    "model.events": "model promotions seen by the stream",
    "deadletter": "malformed or poisoned messages with the error that parked them",
}


async def ensure_topics(bootstrap: str, partitions: int, timeout_s: float = 30.0, prefix: str = "") -> list[str]:
    """Create the missing topics (names with ``prefix``, see Settings.topic_prefix); return the names
    created. Idempotent."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [prefix + name for name in TOPICS if prefix + name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in missing]
            )
        return missing
    finally:
        await admin.close()

DEADLETTER = "deadletter"
