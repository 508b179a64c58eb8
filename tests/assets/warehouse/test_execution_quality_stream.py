"""Implementation shortfall from the stream's own rows: the paper Trader works orders above its participation
limit as TWAP parents for ~90 simulated minutes, everything is stored through storage.stream.write_batch in the
real PostgreSQL, the execution marts are built with dbt for that account, and every stored parent's row is
checked against the stored trades, computed here in exact Decimal."""

from __future__ import annotations

import os
import uuid
from decimal import Decimal

import pytest

from tests.assets.warehouse.apart import execution_marts
from tests.assets.warehouse.conftest import rows
from tests.streaming.conftest import sim_ticks
from tests.streaming.test_oms_stream import _store, _trader

pytestmark = pytest.mark.stack

MINUTES = int(os.environ.get("TRADELOOP_EQ_STREAM_MINUTES", "90"))  # simulated; longer runs by setting it


def test_every_stored_parent_has_its_shortfall_from_the_stored_trades(engine, pg_url):
    account = f"eq-s-{uuid.uuid4().hex[:8]}"
    trader = _trader(account, participation=0.02)
    for i, tick in enumerate(sim_ticks(MINUTES)):
        trader.on_tick(tick)
        if i % 500 == 499:
            _store(engine, trader)
    _store(engine, trader)

    parents = {r["parent_id"]: r for r in rows(engine, "select * from parent_orders where account = :a", a=account)}
    fills: dict[str, list[tuple[Decimal, Decimal]]] = {}
    for r in rows(engine, "select o.parent_id, t.price, t.quantity from trades t join orders o using (client_order_id)"
                          " where t.account = :a and o.parent_id is not null", a=account):
        fills.setdefault(r["parent_id"], []).append((r["price"], r["quantity"]))
    assert len([p for p in parents if p in fills]) >= 5, f"too few parents traded in {MINUTES} minutes"
    assert set(fills) <= set(parents)  # every child's parent is stored (no liquidation in this run)

    with execution_marts(engine, pg_url, [account]) as marts:
        mart = {r["parent_id"]: r for r in rows(engine, f"select * from {marts}.mart_execution_quality")}
        by_algo = rows(engine, f"select * from {marts}.mart_execution_quality_by_algorithm")

    assert set(mart) == set(parents)  # one row per stored parent (those without fills yet included)
    for pid, p in parents.items():
        row = mart[pid]
        assert (row["algorithm"], row["arrival_source"], row["arrival_price"]) == ("twap", "parent_order",
                                                                                 p["arrival_price"]), pid
        assert row["parent_created_at"] == p["created_at"] and row["parent_quantity"] == p["quantity"]
        got = fills.get(pid, [])
        filled = sum((q for _, q in got), Decimal(0))
        assert row["filled_quantity"] == filled == p["filled_quantity"], pid
        assert row["fills"] == len(got)
        if not got:
            assert row["shortfall"] is None
            continue
        sign = 1 if p["side"] == "buy" else -1
        expected = sign * (sum(price * q for price, q in got) - p["arrival_price"] * filled)
        assert row["shortfall"] == expected, pid  # numeric in PostgreSQL, Decimal here: exact
        assert row["avg_fill_price"] * filled == pytest.approx(sum(price * q for price, q in got))
    [twap] = by_algo
    traded = [pid for pid in parents if pid in fills]
    assert (twap["algorithm"], twap["parents"]) == ("twap", len(traded))
    assert twap["shortfall"] == sum(mart[pid]["shortfall"] for pid in traded)
