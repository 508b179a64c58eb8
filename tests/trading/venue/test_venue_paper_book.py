"""PaperVenue in book mode: walking depth, queue position, trade prints, re-sync, TIF, self trade, latency."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from venue_testkit import book, fills, order, statuses, tick

from trading.records import Liquidity, OrderStatus
from trading.venue import InvalidMarketDataError, LatencyModel, PaperVenue


def venue(**kw) -> PaperVenue:
    v = PaperVenue(fill_mode="book", **kw)
    v.on_book(book(1, [("99", "2"), ("98", "5")], [("100", "1"), ("101", "2"), ("102", "5")]))
    return v


def prices(events) -> list[tuple[D, D, Liquidity]]:
    return [(f.price, f.quantity, f.liquidity) for f in fills(events)]


def test_market_order_walks_depth_and_drops_what_is_not_there():
    v = venue()
    ev = v.submit(order("m", qty="4"))
    assert prices(ev) == [(D("100"), D("1"), Liquidity.TAKER), (D("101"), D("2"), Liquidity.TAKER),
                          (D("102"), D("1"), Liquidity.TAKER)]
    ev = v.submit(order("m2", qty="10"))  # taken liquidity stays taken until the next snapshot
    assert sum(f.quantity for f in fills(ev)) == D("4")
    assert statuses(ev)[-1] == ("m2", "canceled", "no_liquidity")
    v.on_book(book(2, [("99", "2")], [("100", "3")]))
    assert prices(v.submit(order("m3", qty="1"))) == [(D("100"), D("1"), Liquidity.TAKER)]


def test_limit_walks_up_to_its_price_and_rests_the_rest():
    v = venue()
    ev = v.submit(order("l", kind="limit", price="101", qty="5"))
    assert prices(ev) == [(D("100"), D("1"), Liquidity.TAKER), (D("101"), D("2"), Liquidity.TAKER)]
    assert ev[-1].status is OrderStatus.PARTIALLY_FILLED and ev[-1].remaining_quantity == D("2")
    # now the best bid: a sell print at 101 fills it as maker at its price
    ev = v.on_tick(tick(2, "101", "5", side="sell"))
    assert prices(ev) == [(D("101"), D("2"), Liquidity.MAKER)]


def test_queue_position_volume_ahead_trades_first():
    v = venue()
    v.submit(order("q", kind="limit", price="99", qty="3"))  # 2 ahead of us at 99
    assert fills(v.on_tick(tick(2, "99", "1.5"))) == []
    ev = v.on_tick(tick(3, "99", "1"))  # 0.5 ahead left, then 0.5 of ours
    assert prices(ev) == [(D("99"), D("0.5"), Liquidity.MAKER)]
    ev = v.on_tick(tick(4, "99", "10"))
    assert prices(ev) == [(D("99"), D("2.5"), Liquidity.MAKER)]
    assert ev[-1].status is OrderStatus.FILLED


def test_buy_prints_do_not_fill_bids_and_prints_through_fill_fully():
    v = venue()
    v.submit(order("q", kind="limit", price="99", qty="3"))
    assert fills(v.on_tick(tick(2, "99", "50", side="buy"))) == []
    ev = v.on_tick(tick(3, "97", "0.1", side="sell"))  # the market traded below us: we were hit
    assert prices(ev) == [(D("99"), D("3"), Liquidity.MAKER)]


def test_unknown_aggressor_hits_the_side_it_touches():
    v = venue()
    v.submit(order("q", kind="limit", side="sell", price="100", qty="1"))  # behind 1 at 100
    ev = v.on_tick(tick(2, "100", "1.5", side="unknown"))
    assert prices(ev) == [(D("100"), D("0.5"), Liquidity.MAKER)]


def test_resync_shrinking_level_removes_volume_from_behind_growing_joins_behind():
    v = venue()
    v.submit(order("q", kind="limit", price="99", qty="1"))  # 2 ahead
    v.on_book(book(2, [("99", "1"), ("98", "5")], [("100", "1")]))  # 1 canceled: must have been ahead of us
    v.on_book(book(3, [("99", "4"), ("98", "5")], [("100", "1")]))  # 3 joined: behind us
    assert fills(v.on_tick(tick(4, "99", "1"))) == []  # the 1 still ahead
    ev = v.on_tick(tick(5, "99", "2"))
    assert prices(ev) == [(D("99"), D("1"), Liquidity.MAKER)]


def test_new_snapshot_crossing_a_resting_order_fills_it_at_its_price():
    v = venue()
    v.submit(order("q", kind="limit", price="99.5", qty="2"))  # inside the spread, nobody ahead
    ev = v.on_book(book(2, [("99", "2")], [("99.3", "1.5"), ("100", "1")]))
    assert prices(ev) == [(D("99.5"), D("1.5"), Liquidity.MAKER)]


def test_ioc_fok_post_only_in_book_mode():
    v = venue()
    ev = v.submit(order("ioc", kind="limit", price="101", qty="5", tif="ioc"))
    assert sum(f.quantity for f in fills(ev)) == D("3")
    assert statuses(ev)[-1] == ("ioc", "canceled", "ioc_remainder_canceled")
    ev = v.submit(order("fok", kind="limit", price="102", qty="6", tif="fok"))  # only 5 left up to 102
    assert fills(ev) == [] and statuses(ev)[-1] == ("fok", "canceled", "fok_not_fillable")
    ev = v.submit(order("fok2", kind="limit", price="102", qty="5", tif="fok"))
    assert sum(f.quantity for f in fills(ev)) == D("5") and ev[-1].status is OrderStatus.FILLED
    ev = v.submit(order("po", kind="limit", side="sell", price="99", post_only=True))
    assert statuses(ev) == [("po", "rejected", "post_only_would_cross")]


def test_our_orders_never_trade_with_each_other():
    v = venue()
    v.submit(order("ask", side="sell", kind="limit", price="99.5", qty="1"))
    ev = v.submit(order("buy", kind="limit", price="101", qty="2"))
    assert fills(ev) == []
    assert statuses(ev)[-1] == ("buy", "canceled", "self_trade_prevented")
    assert [o.client_order_id for o in v.open_orders()] == ["ask"]


def test_stop_triggers_on_a_print_and_walks_the_book():
    v = venue()
    v.submit(order("stop", kind="stop", stop="100.5", qty="2"))
    assert fills(v.on_tick(tick(2, "100", "0.1", side="buy"))) == []
    ev = v.on_tick(tick(3, "101", "0.5", side="buy"))  # last 101 >= 100.5
    assert [(f.price, f.quantity) for f in fills(ev)] == [(D("101"), D("1.5")), (D("102"), D("0.5"))]


def test_cancel_and_replace_in_book_mode():
    v = venue()
    v.submit(order("q", kind="limit", price="99", qty="3"))
    ev = v.replace("q", D("1"), None, ts=2)  # decrease: keeps its place behind 2
    assert statuses(ev) == [("q", "ack", "replaced")]
    assert prices(v.on_tick(tick(3, "99", "2.5"))) == [(D("99"), D("0.5"), Liquidity.MAKER)]
    ev = v.replace("q", None, D("100"), ts=4)  # to a crossing price: takes the ask
    assert prices(ev) == [(D("100"), D("0.5"), Liquidity.TAKER)]
    v.submit(order("c", kind="limit", price="98", qty="1"))
    assert statuses(v.cancel("c", ts=5)) == [("c", "canceled", "canceled_by_client")]
    assert fills(v.on_tick(tick(6, "97", "9"))) == []


def test_latency_orders_wait_for_the_data_after_their_arrival():
    v = venue(latency=LatencyModel(order_to_venue_ns=10, venue_to_fill_ns=3))
    ev = v.submit(order("m", qty="1", ts=5))  # arrives at 15
    assert statuses(ev) == [("m", "new", None)]
    assert v.on_tick(tick(12, "99", "0.1", side="sell")) == []
    ev = v.on_book(book(20, [("99", "1")], [("105", "1")]))  # arrives before this snapshot applies
    assert statuses(ev) == [("m", "ack", None), ("m", "fill", "100.00"), ("m", "filled", None)]
    assert ev[0].ts == 15 and ev[1].ts == 18
    v.submit(order("late", qty="1", ts=30))
    assert statuses(v.cancel("late", ts=31)) == [("late", "canceled", "canceled_by_client")]
    assert v.on_book(book(50, [("99", "1")], [("105", "1")])) == []


def test_bad_book_data_raises():
    v = PaperVenue(fill_mode="book")
    with pytest.raises(InvalidMarketDataError, match="tick size"):
        v.on_book(book(1, [("99.001", "1")], [("100", "1")]))
    with pytest.raises(InvalidMarketDataError, match="crossed"):
        v.on_book(book(1, [("101", "1")], [("100", "1")]))
    with pytest.raises(InvalidMarketDataError, match="amount"):
        v.on_tick(tick(1, "100", "-1"))
