"""TWAP / VWAP / Iceberg schedules, cancel, progress, shortfall, and a run against the paper venue."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from venue_testkit import bar

from trading.ledger import Portfolio
from trading.execution import TWAP, VWAP, CancelRequest, ExecutionError, Iceberg, volume_profile
from trading.records import Fill, Liquidity, OrderEvent, OrderRequest, OrderStatus, OrderType, Side, stable_id
from trading.venue import ImpactModel, PaperVenue

COMMON = ("p1", "acc", "algo", "sim", "BTC/USDT")


def child_fill(o: OrderRequest, qty: str, price: str, n: int = 1, fee: str = "0") -> Fill:
    return Fill(stable_id("fill", o.client_order_id, n), o.client_order_id, o.account, o.strategy, o.exchange, o.symbol,
                o.side, D(price), D(qty), D(fee), "USDT", Liquidity.TAKER, o.ts)


def event(o: OrderRequest, status: OrderStatus, reason: str | None = None) -> OrderEvent:
    return OrderEvent(o.client_order_id, o.account, o.strategy, o.symbol, status, D(0), o.quantity, o.ts, reason)


def test_twap_slices_ids_and_merging_missed_slices():
    t = TWAP(*COMMON, Side.BUY, D("10"), D("100"), start_ts=0, end_ts=400, n_slices=4)
    assert t.slice_ts == [0, 100, 200, 300] and t.targets == [D("2.5"), D("5"), D("7.5"), D("10")]
    (c0,) = t.on_time(0)
    assert (c0.quantity, c0.order_type, c0.parent_id, c0.ts) == (D("2.5"), OrderType.MARKET, "p1", 0)
    assert c0.client_order_id == stable_id("child", "p1", 0) == t.child_id(0)
    assert t.on_time(50) == []
    t.on_fill(child_fill(c0, "2.5", "100"))
    (c1,) = t.on_time(100)
    assert c1.quantity == D("2.5") and c1.client_order_id == t.child_id(1)
    t.on_fill(child_fill(c1, "2.5", "101"))
    (c3,) = t.on_time(350)  # slices 2 and 3 both due: one child up to the final target
    assert c3.quantity == D("5") and c3.client_order_id == t.child_id(3)
    t.on_fill(child_fill(c3, "5", "102"))
    assert t.progress.percent == 100.0 and not t.active and t.on_time(500) == []


def test_twap_rounds_to_lots_and_rolls_unfilled_limit_children():
    t = TWAP(*COMMON, Side.SELL, D("1"), D("100"), lot_size=D("0.1"), limit_price=D("99"),
             start_ts=0, end_ts=30, n_slices=3)
    assert t.targets == [D("0.3"), D("0.6"), D("1")]
    (c0,) = t.on_time(0)
    assert (c0.order_type, c0.price, c0.side) == (OrderType.LIMIT, D("99"), Side.SELL)
    t.on_fill(child_fill(c0, "0.1", "99"))
    cancel, c1 = t.on_time(10)  # 0.2 unfilled: canceled and rolled into the next child
    assert cancel == CancelRequest(c0.client_order_id, 10)
    assert c1.quantity == D("0.5")
    assert t.open_children == {c1.client_order_id: D("0.5")}


def test_vwap_follows_profile():
    v = VWAP(*COMMON, Side.BUY, D("10"), D("100"), start_ts=0, end_ts=4, profile=[0.1, 0.2, 0.3, 0.4])
    assert v.targets == [D("1"), D("3"), D("6"), D("10")]
    sizes = []
    for ts in range(4):
        (c,) = v.on_time(ts)
        sizes.append(c.quantity)
        v.on_fill(child_fill(c, str(c.quantity), "100"))
    assert sizes == [D("1"), D("2"), D("3"), D("4")]


def test_volume_profile_from_bars_by_time_of_day():
    hour = 3600 * 10**9
    day = 24 * hour
    bars = []
    for d in range(2):  # two days, volume 1 per hour except 4x in the first six hours
        for h in range(24):
            bars.append(bar(d * day + h * hour, "1", "1", "1", "1", v="4" if h < 6 else "1"))
    prof = volume_profile(bars, 4)
    assert prof == pytest.approx([24 / 42, 6 / 42, 6 / 42, 6 / 42])
    assert sum(prof) == pytest.approx(1.0)
    with pytest.raises(ExecutionError, match="no volume"):
        volume_profile([bar(0, "1", "1", "1", "1", v="0")], 4)


def test_iceberg_shows_one_part_at_a_time():
    ice = Iceberg(*COMMON, Side.BUY, D("5"), D("100"), limit_price=D("99.5"), display_quantity=D("2"), start_ts=10)
    assert ice.on_time(5) == []
    (c1,) = ice.on_time(10)
    assert (c1.quantity, c1.price, c1.client_order_id) == (D("2"), D("99.5"), ice.child_id(1))
    assert ice.on_time(11) == []  # one visible child at a time
    assert ice.on_fill(child_fill(c1, "1", "99.5", 1)) == []
    (c2,) = ice.on_fill(child_fill(c1, "1", "99.5", 2))
    assert c2.client_order_id == ice.child_id(2) and c2.quantity == D("2")
    assert ice.on_fill(child_fill(c1, "1", "99.5", 2)) == []  # the same fill again: ignored
    (c3,) = ice.on_fill(child_fill(c2, "2", "99.5"))
    assert c3.quantity == D("1")  # what is left
    p = ice.progress
    assert (p.filled, p.remaining, p.percent) == (D("4"), D("1"), 80.0)
    assert ice.cancel(20) == [CancelRequest(c3.client_order_id, 20)]
    assert ice.on_time(30) == [] and ice.progress.remaining == D("1")


def test_child_canceled_by_venue_is_replaced_rejected_halts():
    ice = Iceberg(*COMMON, Side.SELL, D("4"), D("100"), limit_price=D("101"), display_quantity=D("2"))
    (c1,) = ice.on_time(0)
    ice.on_event(event(c1, OrderStatus.CANCELED, "canceled_by_client"))
    (c2,) = ice.on_time(1)
    assert c2.client_order_id == ice.child_id(2)
    ice.on_event(event(c2, OrderStatus.REJECTED, "below_min_notional"))
    assert ice.on_time(2) == [] and "below_min_notional" in ice.halted_reason


def test_shortfall_signed_so_cost_is_positive():
    t = TWAP(*COMMON, Side.BUY, D("4"), D("100"), start_ts=0, end_ts=2, n_slices=2)
    (c0,) = t.on_time(0)
    t.on_fill(child_fill(c0, "2", "101", fee="0.2"))
    (c1,) = t.on_time(1)
    t.on_fill(child_fill(c1, "2", "102", fee="0.2"))
    r = t.shortfall()
    assert (r.avg_price, r.price_cost, r.fees, r.cost) == (D("101.5"), D("6"), D("0.4"), D("6.4"))
    assert (r.price_bps, r.cost_bps) == (D("150"), D("160"))
    s = TWAP("p2", *COMMON[1:], Side.SELL, D("2"), D("100"), start_ts=0, end_ts=2, n_slices=1)
    (c,) = s.on_time(0)
    s.on_fill(child_fill(c, "1", "99"))
    r = s.shortfall(final_price=D("97"))
    assert (r.price_cost, r.price_bps, r.unfilled, r.opportunity_cost) == (D("1"), D("100"), D("1"), D("3"))
    s2 = TWAP("p3", *COMMON[1:], Side.SELL, D("1"), D("100"), start_ts=0, end_ts=2, n_slices=1)
    s2.on_time(0)
    assert s2.shortfall().avg_price is None and s2.shortfall().cost == 0


def test_bad_parameters_raise():
    with pytest.raises(ExecutionError, match="lot_size"):
        TWAP(*COMMON, Side.BUY, D("1.00001"), D("100"), start_ts=0, end_ts=10, n_slices=2)
    with pytest.raises(ExecutionError, match="end_ts"):
        TWAP(*COMMON, Side.BUY, D("1"), D("100"), start_ts=10, end_ts=10, n_slices=2)
    with pytest.raises(ExecutionError, match="weights"):
        VWAP(*COMMON, Side.BUY, D("1"), D("100"), start_ts=0, end_ts=10, profile=[0, 0])
    with pytest.raises(ExecutionError, match="arrival_price"):
        TWAP(*COMMON, Side.BUY, D("1"), D("0"), start_ts=0, end_ts=10, n_slices=2)
    with pytest.raises(ExecutionError, match="limit_price"):
        Iceberg(*COMMON, Side.BUY, D("1"), D("100"), display_quantity=D("1"))


def test_twap_through_the_paper_venue_into_a_portfolio():
    venue = PaperVenue(impact=ImpactModel(coefficient=0.0))
    book = Portfolio("acc", D("100000"))
    algo = TWAP(*COMMON, Side.BUY, D("6"), D("100"), start_ts=0, end_ts=6 * 60, n_slices=6)
    for i in range(8):
        ts = i * 60
        for e in venue.on_bar(bar(ts, str(100 + i), str(101 + i), str(99 + i), str(100 + i))):
            if isinstance(e, Fill):
                book.apply_fill(e)
                algo.on_fill(e)
            else:
                algo.on_event(e)
        for action in algo.on_time(ts):
            assert isinstance(action, OrderRequest)  # market children fill before the next slice
            venue.submit(action)
    assert algo.progress.percent == 100.0
    # child i decided at bar i fills at bar i+1's open: 101..106, taker 5 bps
    r = algo.shortfall()
    assert r.avg_price == D("103.5") and r.price_cost == D("21")
    assert r.fees == sum(D(p) * D("0.0005") for p in range(101, 107))
    assert book.position("BTC/USDT").quantity == D("6")
    assert book.position("BTC/USDT", "algo").avg_price == D("103.5")
