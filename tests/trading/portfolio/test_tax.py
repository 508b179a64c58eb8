from __future__ import annotations

from datetime import date, timedelta

import pytest

from trading.portfolio.errors import TaxLotError
from trading.portfolio.tax import TaxLedger, tax_aware_orders

D0 = date(2026, 1, 1)


def ledger(method: str) -> TaxLedger:
    t = TaxLedger(method=method)
    t.buy("BTC", 1.0, 100.0, D0)
    t.buy("BTC", 1.0, 300.0, D0 + timedelta(days=1))
    t.buy("BTC", 1.0, 200.0, D0 + timedelta(days=2))
    return t


def test_fifo_relieves_oldest_lots():
    t = ledger("fifo")
    out = t.sell("BTC", 1.5, 250.0, D0 + timedelta(days=10))
    assert [(r.lot_id, r.qty) for r in out] == [("BTC#1", 1.0), ("BTC#2", 0.5)]
    assert sum(r.gain for r in out) == pytest.approx(150 - 25)
    assert t.position("BTC") == pytest.approx(1.5)


def test_hifo_relieves_highest_cost_first_and_realises_less_gain():
    t = ledger("hifo")
    out = t.sell("BTC", 1.5, 250.0, D0 + timedelta(days=10))
    assert [(r.lot_id, r.qty) for r in out] == [("BTC#2", 1.0), ("BTC#3", 0.5)]
    assert sum(r.gain for r in out) == pytest.approx(-50 + 25)
    assert [lot.cost for lot in t.lots["BTC"]] == [100.0, 200.0]


def test_oversell_and_bad_quantities():
    t = ledger("fifo")
    with pytest.raises(TaxLotError, match="exceeds the 3.0 held"):
        t.sell("BTC", 4, 100.0, D0)
    with pytest.raises(TaxLotError, match="must be > 0"):
        t.buy("BTC", -1, 100.0, D0)
    with pytest.raises(TaxLotError, match="fifo' or 'hifo"):
        TaxLedger(method="lifo")


def test_wash_sale_blocks_buy_back_and_tracks_disallowed_loss():
    t = TaxLedger(method="fifo", wash_days=30)
    t.buy("ETH", 2.0, 100.0, D0)
    sale_day = D0 + timedelta(days=40)
    out = t.sell("ETH", 2.0, 80.0, sale_day)  # a 40 loss
    assert sum(r.gain for r in out) == pytest.approx(-40)
    assert t.blocked("ETH", sale_day + timedelta(days=30))
    assert not t.blocked("ETH", sale_day + timedelta(days=31))
    assert not t.blocked("BTC", sale_day)
    # a forced buy-back of 1.5 inside the window: the loss on 1.5 units (30) is disallowed, added to basis
    lot = t.buy("ETH", 1.5, 85.0, sale_day + timedelta(days=10))
    assert t.disallowed == [("ETH", sale_day + timedelta(days=10), pytest.approx(30.0))]
    assert lot.cost == pytest.approx(85.0 + 20.0)
    # the remaining 0.5 units' loss can still be disallowed by another buy in the window, not after it
    t.buy("ETH", 1.0, 90.0, sale_day + timedelta(days=31))
    assert len(t.disallowed) == 1
    t.buy("ETH", 1.0, 90.0, sale_day + timedelta(days=20))
    assert t.disallowed[-1][2] == pytest.approx(10.0)
    assert not t.blocked("ETH", sale_day + timedelta(days=21))  # all of the loss is now used up


def test_harvest_sells_lots_beyond_the_threshold_and_blocks_rebuying():
    t = TaxLedger(method="hifo", wash_days=30)
    t.buy("SOL", 10, 100.0, D0)
    t.buy("SOL", 10, 150.0, D0 + timedelta(days=5))
    t.buy("BTC", 1, 100.0, D0)
    prices = {"SOL": 120.0, "BTC": 95.0}
    cands = t.harvest_candidates(prices, threshold=0.1)
    assert [(lot.lot_id, loss) for lot, loss in cands] == [("SOL#2", pytest.approx(300.0))]  # BTC -5% < 10%
    day = D0 + timedelta(days=60)
    out = t.harvest(prices, 0.1, day)
    assert [(r.lot_id, r.gain) for r in out] == [("SOL#2", pytest.approx(-300.0))]
    assert t.position("SOL") == 10 and t.blocked("SOL", day + timedelta(days=1))
    orders, blocked = tax_aware_orders(t, {"SOL": 20, "BTC": 0.5}, day + timedelta(days=1))
    assert orders == {"BTC": -0.5} and blocked == ["SOL"]
    orders, blocked = tax_aware_orders(t, {"SOL": 20, "BTC": 1}, day + timedelta(days=31))
    assert orders == {"SOL": 10} and blocked == []
