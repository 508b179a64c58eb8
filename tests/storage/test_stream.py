"""storage.stream: the worker's batch writes are idempotent, and what it wrote is what a restart reads."""

from __future__ import annotations

import uuid
from dataclasses import replace
from decimal import Decimal

import sqlalchemy as sa

from storage import stream


def _batch(account: str):
    from streaming.trader import Trader
    from tests.streaming.conftest import sim_ticks
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    sim = SimVenue(SimConfig(seed=7))
    trader = Trader(account, {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=Decimal(100000),
                    limits=RiskLimits(), instruments={i.symbol: i for i in sim.instruments()})
    for t in sim_ticks(60):
        trader.on_tick(t)
    return trader.drain()


def _write(engine, batch, mode: str = "paper") -> None:
    with engine.begin() as conn:
        stream.write_batch(conn, mode=mode, account=batch.account, bars=batch.bars, orders=batch.orders,
                           events=batch.events, fills=batch.fills, positions=batch.positions,
                           signals=batch.signals, transitions=batch.transitions)


def test_a_replayed_batch_changes_nothing_and_a_restart_reads_it_back(engine):
    account = f"st-s-{uuid.uuid4().hex[:6]}"
    batch = _batch(account)
    assert batch.fills and batch.orders and batch.bars
    _write(engine, batch)
    _write(engine, batch)  # a replay after a crash
    with engine.connect() as conn:
        n_trades = conn.execute(sa.text("SELECT count(*) FROM trades WHERE account = :a"), {"a": account}).scalar()
        n_orders = conn.execute(sa.text("SELECT count(*) FROM orders WHERE account = :a"), {"a": account}).scalar()
    assert (n_trades, n_orders) == (len(batch.fills), len(batch.orders))

    with engine.begin() as conn:
        back = stream.restore_account(conn, account, ["BTC/USDT", "ETH/USDT", "SOL/USDT"], mode="paper",
                                      exchange="sim", interval="1m", warmup_bars=5)
    # as written, but for the time: PostgreSQL keeps microseconds
    written = sorted(batch.fills, key=lambda f: (f.ts, f.fill_id))
    assert [replace(f, ts=0) for f in back.fills] == [replace(f, ts=0) for f in written]
    assert all(abs(a.ts - b.ts) <= 1000 for a, b in zip(back.fills, written))
    assert back.known_order_ids == {o.client_order_id for o in batch.orders}
    assert len(back.bars) == 15 and back.bars == sorted(back.bars, key=lambda b: (b.exchange_ts, b.symbol))
    assert back.halted is None
    # another mode's fills are another ledger
    with engine.begin() as conn:
        assert stream.restore_account(conn, account, [], mode="live", exchange="sim", interval="1m",
                                      warmup_bars=5).fills == []


def test_open_orders_of_a_dead_worker_are_canceled_once_with_an_audit_row(engine):
    account = f"st-o-{uuid.uuid4().hex[:6]}"
    batch = _batch(account)
    with engine.begin() as conn:  # orders without their events: left open, as by a worker that died
        stream.write_batch(conn, mode="paper", orders=batch.orders)
    with engine.begin() as conn:
        stream.restore_account(conn, account, [], mode="paper", exchange="sim", interval="1m", warmup_bars=1,
                               now_ns=1)
    with engine.connect() as conn:
        status = set(conn.execute(sa.text("SELECT DISTINCT status FROM orders WHERE account = :a"), {"a": account}).scalars())
        audits = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE scope = :s AND action = 'cancel_open_orders'"),
                              {"s": f"account:{account}"}).scalar()
    assert status == {"canceled"} and audits == 1


def test_a_standing_kill_switch_is_read_back_until_resumed(engine):
    account = f"st-k-{uuid.uuid4().hex[:6]}"
    scope = f"account:{account}"
    with engine.begin() as conn:
        stream.write_audit(conn, f"{account}-k", 1_000_000_000, "ops", "kill_switch", scope, "fat finger", {})
        halted = stream.restore_account(conn, account, [], mode="paper", exchange="sim", interval="1m",
                                        warmup_bars=1).halted
        stream.write_audit(conn, f"{account}-r", 2_000_000_000, "ops", "resume", scope, "checked", {})
        after = stream.restore_account(conn, account, [], mode="paper", exchange="sim", interval="1m",
                                       warmup_bars=1).halted
    assert halted == ("ops", "fat finger") and after is None


def test_risk_metrics_per_second_with_var_named_by_confidence(engine):
    account = f"st-r-{uuid.uuid4().hex[:6]}"
    metrics = {"equity": 100.5, "cash": float("nan"), "var": {"account": {"confidence": 0.95, "var": 1.5, "cvar": 2.0}}}
    with engine.begin() as conn:
        n = stream.write_risk_metrics(conn, account, metrics, 5_400_000_001)
        stream.write_risk_metrics(conn, account, metrics, 5_900_000_000)  # same second: nothing new
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT metric, value FROM risk_metrics WHERE account = :a"), {"a": account}).all())
    assert n == 3 and rows == {"equity": Decimal("100.5"), "var_95": Decimal("1.5"), "cvar_95": Decimal("2.0")}


def test_signals_need_their_account(engine):
    import pytest

    with pytest.raises(ValueError, match="account"), engine.begin() as conn:
        stream.write_batch(conn, mode="paper", signals=[object()])


def test_the_stream_keeps_its_partitions_ahead_and_rows_land_in_them(engine):
    """A month with no partition sends its rows to the default partition; the worker creates this month's
    and next month's at start and hourly (storage.stream.ensure_partitions_ahead)."""
    from datetime import datetime, timezone

    now = datetime(2031, 1, 20, tzinfo=timezone.utc)  # far from the months the migration pre-creates
    now_ns = int(now.timestamp()) * 1_000_000_000

    def parts(table: str) -> set[str]:
        with engine.connect() as c:
            return set(c.execute(sa.text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                          " WHERE i.inhparent = CAST(:t AS regclass)"), {"t": table}).scalars())

    assert not any(p.endswith(("_p203101", "_p203102")) for t in stream.PARTITIONED for p in parts(t))
    with engine.begin() as conn:
        stream.ensure_partitions_ahead(conn, now_ns)
        stream.ensure_partitions_ahead(conn, now_ns)  # again: nothing to do
    for table in stream.PARTITIONED:
        assert {f"{table}_p203101", f"{table}_p203102"} <= parts(table), table
    account = f"parts-{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:
        stream.write_audit(conn, f"{account}-1", now_ns, "test", "probe", account, "partition probe", {})
    with engine.connect() as c:
        where = c.execute(sa.text("SELECT tableoid::regclass::text FROM audit_log WHERE scope = :s"),
                          {"s": account}).scalar()
    assert where == "audit_log_p203101"
