"""The emergency liquidator's parents are stored in parent_orders like the router's: a kill switch with
flatten on a Trader holding positions records one 'liquidation' parent per (strategy, symbol), priced at the
engine's last price at the decision, closed when its children are; the execution mart measures its shortfall
against that price.  Real PostgreSQL, real dbt."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from tests.streaming.conftest import sim_ticks

pytestmark = pytest.mark.stack

INTERVAL_S = 5


def _trader(account: str):
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    sim = SimVenue(SimConfig(seed=7))
    # children of at most 20k notional: a 5% sleeve of 1M (50k) closes in 3 children, 5 s apart
    limits = RiskLimits.from_dict({"liquidation": {"max_child_notional": 20_000, "interval_s": INTERVAL_S}})
    return Trader(account, {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=Decimal(1_000_000),
                  limits=limits, instruments={i.symbol: i for i in sim.instruments()})


def _store(engine, trader) -> None:
    from storage.stream import write_batch

    b = trader.drain()
    with engine.begin() as conn:
        write_batch(conn, mode="paper", account=b.account, bars=b.bars, orders=b.orders, events=b.events,
                    fills=b.fills, positions=b.positions, signals=b.signals, parents=b.parents)
    trader.release()


def _holding(account: str, ticks):
    """A Trader fed ticks until it holds positions; returns it and the ticks not fed yet."""
    trader = _trader(account)
    for i, t in enumerate(ticks):
        trader.on_tick(t)
        if i > 300 and trader.portfolio.positions() and not trader.oms.orders:
            return trader, ticks[i + 1:]
    raise AssertionError("the strategy held no position")


def _rows(engine, sql: str, **params) -> list[dict]:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]


def test_a_flatten_stores_its_liquidation_parents_and_the_mart_prices_them_at_the_decision(engine, pg_url):
    from storage.stream import ts_of
    from tests.assets.warehouse.apart import execution_marts

    account = f"liq-{uuid.uuid4().hex[:8]}"
    trader, rest = _holding(account, sim_ticks(60))
    _store(engine, trader)
    held = {("t", sym): p.quantity for sym, p in trader.portfolio.positions().items() if p.quantity}  # one slot
    prices = dict(trader.engine.last_price)
    trader.kill_switch("drill", flatten=True, who="test")
    decided_at = trader.clock.ts
    for t in rest[:300]:  # the children are due within seconds
        trader.on_tick(t)
    _store(engine, trader)

    parents = _rows(engine, "select * from parent_orders where account = :a", a=account)
    assert {(p["strategy"], p["symbol"]) for p in parents} == set(held) and len(parents) == len(held)
    children = _rows(engine, "select parent_id, client_order_id, quantity from orders where account = :a"
                             " and parent_id is not null", a=account)
    fills = _rows(engine, "select o.parent_id, t.price, t.quantity from trades t join orders o using"
                          " (client_order_id) where t.account = :a and o.parent_id is not null", a=account)
    for p in parents:
        qty = held[(p["strategy"], p["symbol"])]
        mine = [c for c in children if c["parent_id"] == p["parent_id"]]
        assert (p["algorithm"], p["status"], p["side"]) == ("liquidation", "done", "sell" if qty > 0 else "buy")
        assert p["quantity"] == abs(qty) == sum(c["quantity"] for c in mine)
        assert p["params"] == {"children": len(mine), "interval_s": INTERVAL_S, "reason": "kill_switch: drill"}
        assert len(mine) >= 2  # split within the notional cap
        assert p["arrival_price"] == prices[p["symbol"]]
        assert p["created_at"] == ts_of(decided_at)
        assert p["filled_quantity"] == sum(f["quantity"] for f in fills if f["parent_id"] == p["parent_id"])
    assert not any(p.quantity for p in trader.portfolio.positions().values())  # flat

    with execution_marts(engine, pg_url, [account]) as marts:
        mart = {r["parent_id"]: r for r in _rows(engine, f"select * from {marts}.mart_execution_quality"
                                                        " where algorithm = 'liquidation'")}
    assert set(mart) == {p["parent_id"] for p in parents}
    for p in parents:
        row, got = mart[p["parent_id"]], [(f["price"], f["quantity"]) for f in fills if f["parent_id"] == p["parent_id"]]
        sign = 1 if p["side"] == "buy" else -1
        assert (row["arrival_source"], row["arrival_price"]) == ("parent_order", p["arrival_price"])
        assert row["filled_quantity"] == p["quantity"]
        assert row["shortfall"] == sign * (sum(price * q for price, q in got) - p["arrival_price"] * p["quantity"])


def test_a_liquidation_parent_working_at_a_restart_is_closed_not_rebuilt(engine):
    """The router's stored parents are rebuilt as algorithms after a restart; a liquidation parent is not one
    (its children are plain scheduled orders): the restarted worker closes it with what was filled."""
    from storage.stream import restore_account
    from streaming.trader import Restored

    account = f"liq-r-{uuid.uuid4().hex[:8]}"
    trader, _ = _holding(account, sim_ticks(60))
    trader.kill_switch("drill", flatten=True, who="test")
    _store(engine, trader)  # stopped before any child was due
    working = _rows(engine, "select parent_id, status, filled_quantity from parent_orders where account = :a", a=account)
    assert working and {p["status"] for p in working} == {"working"}

    with engine.begin() as conn:
        rows = restore_account(conn, account, ["BTC/USDT", "ETH/USDT", "SOL/USDT"], mode="paper", exchange="sim",
                               interval="1m", warmup_bars=50)
    second = _trader(account)
    second.restore(Restored(fills=rows.fills, known_order_ids=rows.known_order_ids, bars=rows.bars,
                            parents=rows.parents))
    assert set(second.liquidations) == {p["parent_id"] for p in working}
    _store(engine, second)
    after = _rows(engine, "select parent_id, status, filled_quantity, quantity, reason from parent_orders"
                          " where account = :a", a=account)
    assert any(p["status"] == "canceled" for p in after)  # its later children were never sent
    for p in after:
        assert p["status"] in ("done", "canceled")
        assert (p["status"] == "done") == (p["filled_quantity"] == p["quantity"])
        if p["status"] == "canceled":
            assert p["reason"] == f"liquidation ended with {p['quantity'] - p['filled_quantity']} unfilled"
