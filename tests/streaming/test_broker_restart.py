"""Reliability against a broker restart: a real worker keeps trading on its own Tansu broker after that
broker is stopped and started again on the same port.

The embedded broker stores in memory (ARCHITECTURE.md), so a restart loses every topic, record and
committed offset; `tradeloop up` re-creates the topics.  The worker must reconnect by itself, rejoin its
consumer group, read the new ticks from the re-created topic, and keep Postgres (the system of record)
free of duplicates: no order decided twice, fills summing to each order's quantity, positions equal to
the sum of fills.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tests.streaming.conftest import consume_all, produce_ticks, sim_ticks, start_worker

pytestmark = pytest.mark.timeout(420)  # every wait below is bounded; this only guards against a hang


def _ensure_topics(bootstrap: str, partitions: int, prefix: str, timeout_s: float = 30.0) -> None:
    """ensure_topics, retried: just after a (re)start the broker, or a racing auto-create by the
    worker's own metadata requests, can make the first attempt fail."""
    from streaming.topics import TOPICS, ensure_topics

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            asyncio.run(ensure_topics(bootstrap, partitions, prefix=prefix, timeout_s=10))
            if not asyncio.run(_missing(bootstrap, [prefix + t for t in TOPICS])):
                return
        except Exception:  # noqa: BLE001 -- retried until the deadline, then raised
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"topics with prefix {prefix!r} not all created on {bootstrap}")
        time.sleep(0.5)


async def _missing(bootstrap: str, names: list[str]) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        have = set(await admin.list_topics())
    finally:
        await admin.close()
    return [n for n in names if n not in have]


def _produce_retrying(bootstrap: str, prefix: str, ticks, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            produce_ticks(bootstrap, prefix, ticks)
            return
        except Exception:  # noqa: BLE001 -- a broker that has just come back may refuse the first connect
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _counts(engine, account: str) -> tuple[int, int]:
    with engine.connect() as c:
        orders = c.execute(sa.text("SELECT count(*) FROM orders WHERE account=:a"), {"a": account}).scalar()
        trades = c.execute(sa.text("SELECT count(*) FROM trades WHERE account=:a"), {"a": account}).scalar()
    return orders, trades


@pytest.fixture
def own_broker(tmp_path):
    """A Tansu broker of this test alone (so stopping it disturbs no other test), stopped at the end
    whichever incarnation is running."""
    from deploy.stack import broker
    from deploy.stack.process import free_port, stop
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "broker-home")
    port = free_port()
    holder = {"record": broker.start(settings, port)}
    try:
        yield settings, port, holder
    finally:
        if holder["record"] is not None:
            stop(holder["record"], settings.run_dir)


def test_worker_reconnects_after_broker_restart_and_duplicates_nothing(own_broker, stream_env, engine, tmp_path):
    from deploy.stack import broker
    from deploy.stack.process import stop

    settings, port, holder = own_broker
    bootstrap = f"{settings.host}:{port}"
    prefix, account = stream_env["TRADELOOP_TOPIC_PREFIX"], stream_env["TRADELOOP_ACCOUNT"]
    ex = stream_env["TRADELOOP_STREAM_EXCHANGE"]
    partitions = int(stream_env["TRADELOOP_TOPIC_PARTITIONS"])
    _ensure_topics(bootstrap, partitions, prefix)
    env = {**stream_env, "KAFKA_BOOTSTRAP": bootstrap}

    # two hours of sim ticks: the first hour before the restart, the second after it (the fast SMA
    # cross trades within minutes, so each half has several decisions of its own)
    ticks = sim_ticks(120, ex)
    boundary = ticks[0].exchange_ts + 60 * 60_000_000_000
    before = [t for t in ticks if t.exchange_ts < boundary]
    after = [t for t in ticks if t.exchange_ts >= boundary]

    w = start_worker(env, tmp_path / "worker.log")
    try:
        w.wait_ready(timeout=90)
        _produce_retrying(bootstrap, prefix, before)
        w.wait_ticks(len(before), timeout=90)
        deadline = time.monotonic() + 30
        while _counts(engine, account)[1] == 0 and time.monotonic() < deadline:
            time.sleep(0.3)  # the last batch's effects reach Postgres within the flush interval
        orders0, trades0 = _counts(engine, account)
        assert trades0 > 0, f"no trade before the restart:\n{w.log.read_text()[-3000:]}"
        seen0 = w.get("/risk")["counters_stream"]

        # -- the broker goes away (the worker notices: its fetches and heartbeats fail) ...
        stop(holder["record"], settings.run_dir)
        holder["record"] = None
        time.sleep(3.0)
        assert w.proc.poll() is None, f"the worker died with the broker:\n{w.log.read_text()[-3000:]}"
        # ... and comes back empty on the same port, as after `tradeloop down` / `up`
        holder["record"] = broker.start(settings, port)
        _ensure_topics(bootstrap, partitions, prefix)
        _produce_retrying(bootstrap, prefix, after)

        # the same worker process reconnects and consumes the new ticks (bounded: a rejoin takes ~5 s
        # with the worker's shortened timeouts, fetch retries back off on top)
        deadline = time.monotonic() + 150
        last: dict = {}
        while time.monotonic() < deadline:
            assert w.proc.poll() is None, f"worker exited {w.proc.returncode}:\n{w.log.read_text()[-4000:]}"
            try:
                last = w.get("/risk")["counters_stream"]
            except OSError:  # its web server is busy or restarting a service: ask again
                pass
            if last.get("ticks", 0) >= seen0.get("ticks", 0) + len(after):
                break
            time.sleep(0.5)
        assert last.get("ticks", 0) >= seen0.get("ticks", 0) + len(after), (
            f"worker saw {last} after the restart (before: {seen0}, published {len(after)}):\n"
            f"{w.log.read_text()[-4000:]}")

        # wait for the effects of the last batch to be stored, then look at Postgres
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with engine.connect() as c:
                n = c.execute(sa.text("SELECT count(*) FROM trades WHERE account=:a AND ts >= to_timestamp(:b)"),
                              {"a": account, "b": boundary / 1e9}).scalar()
            if n > 0:
                break
            time.sleep(0.3)
        time.sleep(1.5)  # one more flush interval, so nothing is read half-written
        with engine.connect() as c:
            orders = c.execute(sa.text(
                "SELECT client_order_id, strategy, symbol, created_at, quantity, status, filled_quantity, reason"
                " FROM orders WHERE account=:a"), {"a": account}).fetchall()
            fills = {r[0]: (r[1], r[2], r[3]) for r in c.execute(sa.text(
                "SELECT client_order_id, sum(quantity), count(*), count(DISTINCT fill_id) FROM trades"
                " WHERE account=:a GROUP BY 1"), {"a": account})}
            trades_after = c.execute(sa.text("SELECT count(*) FROM trades WHERE account=:a AND ts >= to_timestamp(:b)"),
                                     {"a": account, "b": boundary / 1e9}).scalar()
            pos = {(r[0], r[1]): r[2] for r in c.execute(sa.text(
                "SELECT strategy, symbol, quantity FROM positions WHERE account=:a"), {"a": account})}
            sums = {(r[0], r[1]): r[2] for r in c.execute(sa.text(
                "SELECT strategy, symbol, sum(CASE WHEN side='buy' THEN quantity ELSE -quantity END) FROM trades"
                " WHERE account=:a GROUP BY 1, 2"), {"a": account})}
    finally:
        w.stop()

    # it kept trading: new orders and fills after the restart, priced by post-restart ticks
    assert len(orders) > orders0 and trades_after > 0, (orders0, len(orders), trades_after)
    # no decision was taken twice: one order per (strategy, symbol, decision time) ...
    keys = [(r[1], r[2], r[3]) for r in orders]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    # ... and no order was filled twice: its fills add up to its quantity exactly once
    for cid, _strategy, _symbol, _created, qty, status, filled, reason in orders:
        got, n_rows, n_ids = fills.get(cid, (Decimal(0), 0, 0))
        assert n_rows == n_ids, (cid, n_rows, n_ids)
        if status == "filled":
            assert got == qty == filled, (cid, qty, got, filled)
        else:
            assert got == filled, (cid, status, reason, got, filled)
    assert set(fills) <= {r[0] for r in orders}  # no fill without its order
    assert pos == sums  # positions equal the sum of fills

    # what went out on the re-created executions topic after the restart carries no duplicate fill
    raw = consume_all(bootstrap, prefix + "executions", timeout_s=3.0)
    import orjson

    ids = [orjson.loads(v)["fill_id"] for v in raw]
    assert ids and len(ids) == len(set(ids)), (len(ids), len(set(ids)))
