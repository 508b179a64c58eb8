"""Trader.restore: rebuilding from the stored fills and bars is not a live event."""

from __future__ import annotations

from decimal import Decimal

from tests.streaming.conftest import sim_ticks


def _trader(account: str):
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    sim = SimVenue(SimConfig(seed=7))
    return Trader(account, {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=Decimal(100000),
                  limits=RiskLimits(), instruments={i.symbol: i for i in sim.instruments()})


def test_restore_rebuilds_positions_without_tripping_anomaly_counters():
    from streaming.trader import Restored

    live = _trader("restore-a")
    for t in sim_ticks(60):
        live.on_tick(t)
    batch = live.drain()
    assert batch.fills and batch.bars
    assert live.engine.fills == []  # drained: a 24/7 worker's memory does not grow with its fills
    assert "fill_without_open_order" not in live.risk.counters

    again = _trader("restore-a")
    again.restore(Restored(fills=batch.fills, bars=sorted(batch.bars, key=lambda b: b.exchange_ts),
                           known_order_ids={f.client_order_id for f in batch.fills}))
    # same positions as the live trader, and the replay left no anomaly behind
    for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        assert again.portfolio.position(sym, "t").quantity == live.portfolio.position(sym, "t").quantity
    assert not {"fill_without_open_order", "price_out_of_order"} & set(again.risk.counters), again.risk.counters
    # ...while a real out-of-order price after the restore is still counted
    last = max(b.exchange_ts for b in batch.bars)
    again.risk.on_price("BTC/USDT", Decimal(1), last - 10**12)
    again.risk.on_price("BTC/USDT", Decimal(1), last - 2 * 10**12)
    assert again.risk.counters["price_out_of_order"] >= 1
