"""Micro-batched ticks: one market.ticks message carries an array of one symbol's ticks.

The producer side (TickBatcher, BatchSender) is tested without a broker; the worker side against the
real broker, Postgres and Faust worker: arrays trade exactly like one tick per message, and a poisoned
element is parked on its own while the rest of its message trades.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import orjson
import sqlalchemy as sa

from tests.streaming.conftest import consume_all, produce, produce_ticks, sim_ticks, start_worker


# -- producer side ---------------------------------------------------------------------------------------

def test_batcher_completes_at_n_ticks_and_falls_due_after_t_ms_per_symbol():
    from streaming.producers import TickBatcher

    ticks = sim_ticks(10)
    btc = [t for t in ticks if t.symbol == "BTC/USDT"][:7]
    eth = [t for t in ticks if t.symbol == "ETH/USDT"][:1]
    b = TickBatcher(max_ticks=3, max_ms=5)
    out = [b.add(t, now=0.0) for t in btc[:3]]
    assert out[:2] == [None, None] and out[2] == btc[:3]  # complete at N, not before
    assert b.add(btc[3], now=0.010) is None
    assert b.add(eth[0], now=0.012) is None
    assert b.next_due() == 0.015
    assert b.due(0.0149) == []  # the first tick has waited 4.9 ms only
    assert b.due(0.015) == [[btc[3]]]  # due after T ms; the other symbol's batch is not
    assert b.due(0.0169) == [] and b.due(0.017) == [eth]
    assert b.add(btc[4], now=1.0) is None and b.drain() == [[btc[4]]] and b.next_due() is None
    zero = TickBatcher(max_ticks=200, max_ms=0)  # no wait: every tick is its own batch
    assert [zero.add(t, now=0.0) for t in btc[:2]] == [[btc[0]], [btc[1]]]


class _FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, float]] = []

    async def send(self, topic, value, key=None):
        self.sent.append((topic, value, key, time.monotonic()))


def test_sender_keys_by_symbol_keeps_order_and_sends_a_partial_batch_after_t_ms():
    from streaming.producers import BatchSender, encode_tick

    ticks = sim_ticks(5)[:50]
    fake = _FakeProducer()

    async def run() -> tuple[int, float]:
        async with BatchSender(fake, "market.ticks", max_ticks=4, max_ms=30) as s:
            for t in ticks:
                await s.add(t)
            t0 = time.monotonic()
            n_full = len(fake.sent)
            await asyncio.sleep(0.2)  # no more ticks: the partial batches go out on time alone
            assert len(fake.sent) > n_full
            return n_full, t0

    n_full, t0 = asyncio.run(run())
    assert all(topic == "market.ticks" for topic, *_ in fake.sent)
    per_symbol: dict[bytes, list[bytes]] = {}
    for i, (_, value, key, at) in enumerate(fake.sent):
        items = orjson.loads(value)
        assert isinstance(items, list) and 1 <= len(items) <= 4
        assert all(it["symbol"].encode() == key for it in items)  # one symbol per message, the key
        if i < n_full:
            assert len(items) == 4
        else:
            assert 0.02 <= at - t0 < 0.15, at - t0  # the partial batch waited ~T ms, not until close
        per_symbol.setdefault(key, []).extend(orjson.dumps(it) for it in items)
    for sym, wire in per_symbol.items():  # nothing lost, nothing reordered, the one tick encoding
        assert wire == [encode_tick(t) for t in ticks if t.symbol.encode() == sym]
    assert sum(map(len, per_symbol.values())) == len(ticks)


class _SlowProducer(_FakeProducer):
    async def send(self, topic, value, key=None):
        await asyncio.sleep(0.0005)  # a send that waits (a full accumulator): others may queue meanwhile
        await super().send(topic, value, key)


def test_sender_never_reorders_a_symbol_when_timed_and_full_batches_race():
    """The timed sends take several symbols' batches at once; a full batch completed while they go out
    must not overtake its own symbol's earlier batch (the worker counts such ticks as late)."""
    from streaming.producers import BatchSender, encode_tick

    ticks = sim_ticks(60)[:3000]
    fake = _SlowProducer()

    async def run() -> None:
        async with BatchSender(fake, "market.ticks", max_ticks=5, max_ms=1) as s:
            for i, t in enumerate(ticks):
                await s.add(t)
                if i % 7 == 0:
                    await asyncio.sleep(0.0004)  # lets batches fall due while others are filling

    asyncio.run(run())
    per_symbol: dict[bytes, list[bytes]] = {}
    for _, value, key, _ in fake.sent:
        per_symbol.setdefault(key, []).extend(orjson.dumps(it) for it in orjson.loads(value))
    for sym, wire in per_symbol.items():
        assert wire == [encode_tick(t) for t in ticks if t.symbol.encode() == sym]


# -- worker side -------------------------------------------------------------------------------------------

def _other_stream_env(stream_env: dict, kafka_bootstrap: str, partitions: int) -> dict:
    """A second isolated stream next to ``stream_env`` (as the stream_env fixture makes one)."""
    from deploy.stack.process import free_port
    from streaming.topics import ensure_topics

    tag = uuid.uuid4().hex[:8]
    prefix = f"t{tag}."
    asyncio.run(ensure_topics(kafka_bootstrap, partitions, prefix=prefix))
    return {**stream_env, "TRADELOOP_TOPIC_PREFIX": prefix, "TRADELOOP_STREAM_APP_ID": f"stream-{tag}",
            "TRADELOOP_ACCOUNT": f"acct-{tag}", "TRADELOOP_STREAM_EXCHANGE": f"sim-{tag}",
            "TRADELOOP_WORKER_PORT": str(free_port())}


def _publish_batched(bootstrap: str, prefix: str, ticks, batch_ticks: int = 200, batch_ms: float = 5.0) -> int:
    from streaming.producers import publish

    async def feed():
        for t in ticks:
            yield t

    return asyncio.run(publish(bootstrap, feed(), topic=prefix + "market.ticks", batch_ticks=batch_ticks,
                               batch_ms=batch_ms))


def _fills(engine, account: str) -> list[tuple]:
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT strategy, symbol, side, price, quantity, fee, ts FROM trades"
                                 " WHERE account=:a ORDER BY ts, symbol, side"), {"a": account}).fetchall()
    return [tuple(r) for r in rows]


def test_arrays_trade_exactly_like_one_tick_per_message(stream_env, engine, kafka_bootstrap, stack_settings,
                                                          tmp_path):
    single_env = stream_env
    batched_env = _other_stream_env(stream_env, kafka_bootstrap, stack_settings.topic_partitions)
    workers = [start_worker(single_env, tmp_path / "single.log"), start_worker(batched_env, tmp_path / "batched.log")]
    try:
        for w in workers:
            w.wait_ready()
        single, batched = workers
        # one symbol: sizing reads the equity, which marks every symbol at its last tick, so the order in
        # which two symbols' ticks interleave moves quantities a little; across partitions that order was
        # never fixed, and batches coarsen it.  One symbol's fills are fully determined by its ticks.
        ticks_single = [t for t in sim_ticks(120, single_env["TRADELOOP_STREAM_EXCHANGE"]) if t.symbol == "BTC/USDT"]
        ticks_batched = [t for t in sim_ticks(120, batched_env["TRADELOOP_STREAM_EXCHANGE"])
                         if t.symbol == "BTC/USDT"]
        produce_ticks(kafka_bootstrap, single_env["TRADELOOP_TOPIC_PREFIX"], ticks_single)  # bare objects
        assert _publish_batched(kafka_bootstrap, batched_env["TRADELOOP_TOPIC_PREFIX"], ticks_batched,
                                batch_ticks=50) == len(ticks_batched)
        for w, n in ((single, len(ticks_single)), (batched, len(ticks_batched))):
            assert w.wait_ticks(n) == {"ticks": n}  # every tick traded, none late, replayed or parked
        time.sleep(1.5)  # the idle flush

        a, b = _fills(engine, single_env["TRADELOOP_ACCOUNT"]), _fills(engine, batched_env["TRADELOOP_ACCOUNT"])
        assert len(a) >= 3
        assert a == b  # same fills: strategy, symbol, side, price, quantity, fee, time
        # the tick metric counts ticks, not messages (the batched worker got ~len/50 messages)
        assert f"tradeloop_ticks_total {float(len(ticks_batched))}" in batched.text("/metrics")
    finally:
        for w in workers:
            w.stop()


def test_a_poisoned_element_is_parked_alone_and_its_neighbours_trade(worker_factory, stream_env, kafka_bootstrap):
    from streaming.records import to_data

    prefix, ex = stream_env["TRADELOOP_TOPIC_PREFIX"], stream_env["TRADELOOP_STREAM_EXCHANGE"]
    w = worker_factory()
    ticks = sim_ticks(20, ex)
    _publish_batched(kafka_bootstrap, prefix, ticks)
    w.wait_ticks(len(ticks))

    later = [t for t in sim_ticks(22, ex)[len(ticks):] if t.symbol == "BTC/USDT"][:5]
    assert len(later) == 5
    items = [to_data(t) for t in later]
    bad_price = {**items[1], "price": "abc"}
    wrong_symbol = {**items[3], "symbol": "ETH/USDT"}  # not the message's key
    batch = [items[0], bad_price, items[2], wrong_symbol, items[4], 7]  # 7: not even an object
    produce(kafka_bootstrap, prefix + "market.ticks", [
        (b"BTC/USDT", orjson.dumps(batch)),
        (b"BTC/USDT", b"42"),  # neither object nor array: parked whole
    ])
    deadline = time.monotonic() + 30
    while w.get("/risk")["counters_stream"]["ticks"] < len(ticks) + 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    time.sleep(1.0)
    assert w.get("/risk")["counters_stream"] == {"ticks": len(ticks) + 3}  # elements 0, 2 and 4 traded

    parked = [json.loads(v) for v in consume_all(kafka_bootstrap, prefix + "deadletter")]
    by_value = {p["value"]: p for p in parked}
    assert len(parked) == 4, parked
    bp = by_value[orjson.dumps(bad_price).decode()]  # the element alone, not its whole message
    assert bp["error"].startswith("element 1 of 6: RecordError") and "price" in bp["error"]
    assert by_value[orjson.dumps(wrong_symbol).decode()]["error"].startswith("element 3 of 6: RecordError")
    assert by_value["7"]["error"].startswith("element 5 of 6: RecordError")
    assert "RecordError" in by_value["42"]["error"] and "element" not in by_value["42"]["error"]
    assert len({p["offset"] for p in parked}) == 2  # three elements of one message, one whole message
    metrics = w.text("/metrics")
    assert 'tradeloop_deadletters_total{topic="' + prefix + 'market.ticks"} 4.0' in metrics
    assert f"tradeloop_ticks_total {float(len(ticks) + 3)}" in metrics
