"""Every topic the platform uses, created explicitly with one partition count.

One count for all topics matters: Faust refuses to start (PartitionsMismatch) when a source topic and
its table changelog differ, and brokers that auto-create topics pick their own count (the embedded
broker: 4).  So topics are created before a worker subscribes: by `tradeloop up`, which runs
``python -m streaming.topics`` (a process, so the stack needs nothing of the stream but this command).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

TOPICS: dict[str, str] = {
    "market.ticks": "trades printed by venues, keyed by symbol",
    "market.bars": "OHLCV bars, keyed by symbol",
    "signals": "strategy signals, keyed by symbol",
    "orders.requests": "order requests after strategy, before risk, keyed by account",
    "orders.events": "order lifecycle events (new/ack/fill/cancel/reject), keyed by account",
    "executions": "fills, keyed by account",
    "positions": "position snapshots, keyed by account",
    "risk.alerts": "risk state transitions and breaker trips, keyed by account",
    "control": "kill switch, resume, strategy swap, limit changes, keyed by account",
    "deadletter": "malformed or poisoned messages with the error that parked them",
}
DEADLETTER = "deadletter"


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


def main(argv: list[str] | None = None) -> int:
    """``python -m streaming.topics --bootstrap H:P --partitions N [--prefix P]``: create the missing
    topics; one line on stderr and exit 1 if the broker cannot be reached or refuses."""
    p = argparse.ArgumentParser(prog="python -m streaming.topics", description="Create the stream's topics.")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--prefix", default="")
    args = p.parse_args(argv)
    try:
        created = asyncio.run(ensure_topics(args.bootstrap, args.partitions, prefix=args.prefix))
    except Exception as exc:  # noqa: BLE001 -- any failure is one line for the caller (the stack) to show
        print(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    print(f"created {len(created)} topics: {' '.join(created)}" if created else "all topics exist")
    return 0


if __name__ == "__main__":
    sys.exit(main())
