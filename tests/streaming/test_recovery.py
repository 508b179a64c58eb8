"""Reliability against the real servers: SIGKILL mid-burst, and a Postgres outage under the store."""

from __future__ import annotations

import signal
import threading
import time
from decimal import Decimal

import sqlalchemy as sa

from tests.streaming.conftest import produce_ticks, sim_ticks, start_worker


def test_sigkill_mid_burst_loses_nothing_and_duplicates_nothing(worker_factory, stream_env, engine,
                                                                 kafka_bootstrap, tmp_path):
    account, prefix = stream_env["TRADELOOP_ACCOUNT"], stream_env["TRADELOOP_TOPIC_PREFIX"]
    ex = stream_env["TRADELOOP_STREAM_EXCHANGE"]
    w = worker_factory()
    ticks = sim_ticks(240, ex)
    produce_ticks(kafka_bootstrap, prefix, ticks)
    q = sa.text("SELECT count(*) FROM trades WHERE account=:a")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as c:
            if c.execute(q, {"a": account}).scalar() >= 3:
                break
        time.sleep(0.05)
    seen = sum(w.get("/risk")["counters_stream"].values())
    assert seen < len(ticks), "the burst was over before the kill: make it longer"
    w.stop(signal.SIGKILL)

    w2 = start_worker(stream_env, tmp_path / "worker2.log")
    try:
        w2.wait_ready()
        # every tick is either processed or recognised as a replay of a stored bar
        deadline = time.monotonic() + 90
        last_bar = ticks[-1].exchange_ts - ticks[-1].exchange_ts % 60_000_000_000
        with engine.connect() as c:
            while time.monotonic() < deadline:
                n = c.execute(sa.text("SELECT count(*) FROM market_data WHERE exchange=:e AND ts >= to_timestamp(:t)"),
                              {"e": ex, "t": (last_bar - 60_000_000_000) / 1e9}).scalar()
                if n >= 3:  # the last complete minute of every symbol is stored
                    break
                time.sleep(0.3)
                c.commit()
            time.sleep(1.5)
            c.commit()
            orders = c.execute(sa.text("SELECT client_order_id, quantity, status, filled_quantity, reason FROM orders"
                                       " WHERE account=:a"), {"a": account}).fetchall()
            fills = c.execute(sa.text("SELECT client_order_id, sum(quantity), count(*) FROM trades WHERE account=:a"
                                      " GROUP BY 1"), {"a": account}).fetchall()
            pos = dict(((r[0], r[1]), r[2]) for r in c.execute(sa.text(
                "SELECT strategy, symbol, quantity FROM positions WHERE account=:a"), {"a": account}))
            sums = dict(((r[0], r[1]), r[2]) for r in c.execute(sa.text(
                "SELECT strategy, symbol, sum(CASE WHEN side='buy' THEN quantity ELSE -quantity END) FROM trades"
                " WHERE account=:a GROUP BY 1, 2"), {"a": account}))
            bars = c.execute(sa.text("SELECT symbol, count(*), count(DISTINCT ts) FROM market_data WHERE exchange=:e"
                                     " GROUP BY 1"), {"e": ex}).fetchall()
        assert n >= 3, w2.log.read_text()[-3000:]
        filled = {r[0]: r[1] for r in fills}
        assert len(orders) >= 3
        for cid, qty, status, fq, reason in orders:
            # none lost: each order is filled exactly once by quantity, or was open when the worker died
            if status == "filled":
                assert filled.get(cid) == qty == fq, (cid, qty, filled.get(cid))
            else:
                assert (status, reason) == ("canceled", "worker_restart") and filled.get(cid, Decimal(0)) == 0
        assert set(filled) <= {r[0] for r in orders}  # no fill without its order
        assert pos == sums  # positions equal the sum of fills
        for _, n_rows, n_ts in bars:
            assert n_rows == n_ts
        # the restarted worker traded on after the kill (the hot path resumed, not just the sink)
        assert w2.get("/risk")["counters_stream"].get("ticks", 0) > 0
    finally:
        w2.stop()


def test_store_waits_out_a_postgres_outage_and_loses_nothing(tmp_path):
    """The store retries with backoff while its Postgres is down; once back, the batch is written once."""
    from storage import migrations
    from deploy.stack import postgres
    from deploy.stack.process import stop
    from tests.conftest import make_settings
    from streaming.store import Store
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    settings = make_settings(tmp_path / "pg-home")
    port = settings.pg_port
    record = postgres.start(settings, port)
    url = postgres.url(settings, port)
    try:
        migrations.upgrade(url)
        sim = SimVenue(SimConfig(seed=3))
        trader = Trader("outage", {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=Decimal(100000),
                        limits=RiskLimits(), instruments={i.symbol: i for i in sim.instruments()})
        for t in sim.events(sim.config.origin_ns, sim.config.origin_ns + 60 * 60_000_000_000, kinds=("tick",)):
            trader.on_tick(t)
        batch = trader.drain()
        assert batch.fills
        store = Store(url, max_wait_s=0.5)
        store.write(Trader.drain(trader))  # connects once while up (an empty batch is a no-op)

        stop(record, settings.run_dir, sig=signal.SIGINT)
        done = threading.Event()
        errors: list[BaseException] = []

        def write() -> None:
            try:
                store.write(batch)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
            done.set()

        th = threading.Thread(target=write)
        th.start()
        time.sleep(2.0)
        assert not done.is_set() and store.retries >= 1  # waiting, not failing, not dropping
        record = postgres.start(settings, port)
        assert done.wait(60) and not errors, errors
        store.write(batch)  # a replayed batch changes nothing
        eng = sa.create_engine(url)
        with eng.connect() as c:
            n = c.execute(sa.text("SELECT count(*) FROM trades WHERE account='outage'")).scalar()
            m = c.execute(sa.text("SELECT count(*) FROM orders WHERE account='outage'")).scalar()
        eng.dispose()
        assert n == len(batch.fills) and m == len(batch.orders)
        store.close()
    finally:
        stop(record, settings.run_dir, sig=signal.SIGINT)
