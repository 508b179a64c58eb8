"""PaperVenue in bar mode: conventions, TIF, stops, rejections, cancel/replace, latency, fees and impact."""

from __future__ import annotations

import math
from decimal import Decimal as D

import pytest
from venue_testkit import SYM, bar, fills, order, statuses

from trading.records import Fill, Instrument, Liquidity, OrderEvent, OrderStatus, stable_id
from trading.venue import (
    CostModelError,
    FeeSchedule,
    ImpactModel,
    InvalidMarketDataError,
    InvalidReplaceError,
    LatencyModel,
    OrderClosedError,
    PaperVenue,
    UnknownOrderError,
    VenueConfigError,
)

NO_IMPACT = ImpactModel(coefficient=0.0)


def venue(**kw) -> PaperVenue:
    kw.setdefault("impact", NO_IMPACT)
    return PaperVenue(**kw)


# ------------------------------------------------------------------ market orders


def test_market_fills_at_next_bar_open_with_taker_fee():
    v = venue()
    v.on_bar(bar(0, "90", "91", "89", "90"))
    ev = v.submit(order("m1", qty="2", ts=0))
    assert statuses(ev) == [("m1", "ack", None)]
    ev = v.on_bar(bar(60, "100", "105", "95", "104"))
    (f,) = fills(ev)
    assert (f.price, f.quantity, f.liquidity) == (D("100"), D("2"), Liquidity.TAKER)
    assert f.fee == D("0.1")  # 200 * 5 bps
    assert f.fee_currency == "USDT" and f.fill_id == stable_id("fill", "m1", 1)
    assert statuses(ev)[1] == ("m1", "filled", None)
    assert v.open_orders() == []


def test_market_fill_price_includes_square_root_impact_and_slippage():
    v = PaperVenue(impact=ImpactModel(coefficient=0.1, slippage_bps=2.0))
    v.submit(order("b", qty="1"))
    v.submit(order("s", side="sell", qty="1"))
    ev = v.on_bar(bar(60, "100", "102", "98", "101", v="25"))
    buy, sell = fills(ev)
    # volatility = (102 - 98) / 100 = 0.04, participation 1/25 -> sqrt = 0.2
    frac = 2 / 1e4 + 0.1 * 0.04 * math.sqrt(1 / 25)
    assert buy.price == D("100") * (1 + D(repr(frac)))
    assert float(buy.price) == pytest.approx(100.10)
    assert float(sell.price) == pytest.approx(99.90)
    assert buy.fee == buy.price * D("0.0005")


def test_impact_model_arithmetic_and_validation():
    m = ImpactModel(coefficient=0.5, volatility=0.02)
    assert m.fraction(4, 100, 0.9) == pytest.approx(0.5 * 0.02 * 0.2)  # explicit volatility wins
    assert ImpactModel(coefficient=1.0).fraction(1, 0, 0.01) == pytest.approx(0.01)  # no volume: participation 1
    assert ImpactModel(coefficient=100.0).fraction(1, 1, 1.0) == 0.5  # capped
    for bad in (dict(coefficient=-1), dict(slippage_bps=float("nan")), dict(max_fraction=1.0), dict(volatility=-0.1)):
        with pytest.raises(CostModelError):
            ImpactModel(**bad)


def test_fee_schedule_maker_taker_and_rebate():
    f = FeeSchedule(maker_bps=-0.5, taker_bps=7.5)
    assert f.fee(D("1000"), Liquidity.TAKER) == D("0.75")
    assert f.fee(D("1000"), Liquidity.MAKER) == D("-0.05")
    with pytest.raises(CostModelError):
        FeeSchedule(taker_bps=float("inf"))


# ------------------------------------------------------------------ limit orders


def test_limit_fills_at_limit_when_range_crosses_and_is_maker():
    v = venue()
    v.submit(order("l", kind="limit", price="95"))
    assert fills(v.on_bar(bar(60, "100", "101", "96", "97"))) == []  # low 96 above the limit
    assert fills(v.on_bar(bar(120, "97", "98", "95", "96"))) == []  # touching is not crossing
    (f,) = fills(v.on_bar(bar(180, "96", "97", "94.5", "95")))
    assert (f.price, f.liquidity) == (D("95"), Liquidity.MAKER)
    assert f.fee == D("95") * D("0.0001")


def test_limit_touch_fills_when_enabled():
    v = venue(touch_fills=True)
    v.submit(order("l", side="sell", kind="limit", price="105"))
    (f,) = fills(v.on_bar(bar(60, "100", "105", "99", "104")))
    assert f.price == D("105")


def test_limit_gap_fills_at_open_taker_on_arrival_maker_later():
    v = venue()
    v.submit(order("new", kind="limit", price="100"))
    v.submit(order("old", side="sell", kind="limit", price="110"))
    ev = v.on_bar(bar(60, "99", "101", "98", "100"))  # opens through the new buy limit
    (f,) = fills(ev)
    assert (f.client_order_id, f.price, f.liquidity) == ("new", D("99"), Liquidity.TAKER)
    (f,) = fills(v.on_bar(bar(120, "112", "113", "111", "112")))  # gaps through the resting sell
    assert (f.client_order_id, f.price, f.liquidity) == ("old", D("112"), Liquidity.MAKER)


def test_ioc_and_fok_limits_only_get_the_open():
    v = venue()
    v.submit(order("ioc", kind="limit", price="95", tif="ioc"))
    v.submit(order("fok", kind="limit", price="95", tif="fok"))
    v.submit(order("ioc_ok", kind="limit", price="101", tif="ioc"))
    ev = v.on_bar(bar(60, "100", "101", "90", "92"))
    assert statuses(ev) == [("ioc", "canceled", "ioc_remainder_canceled"), ("fok", "canceled", "fok_not_fillable"),
                            ("ioc_ok", "fill", "100"), ("ioc_ok", "filled", None)]


def test_post_only_rejected_when_it_would_cross_the_last_close():
    v = venue()
    v.on_bar(bar(0, "100", "101", "99", "100"))
    ev = v.submit(order("p", kind="limit", price="100", post_only=True))
    assert statuses(ev) == [("p", "rejected", "post_only_would_cross")]
    ev = v.submit(order("p2", kind="limit", price="99.5", post_only=True))
    assert statuses(ev) == [("p2", "ack", None)]


# ------------------------------------------------------------------ stops


def test_stop_triggers_inside_bar_at_stop_price_or_at_open_on_a_gap():
    v = venue()
    v.submit(order("s", kind="stop", stop="105"))
    v.submit(order("ss", side="sell", kind="stop", stop="90"))
    assert fills(v.on_bar(bar(60, "100", "104", "96", "103"))) == []
    ev = v.on_bar(bar(120, "103", "106", "102", "105"))
    assert [(f.client_order_id, f.price, f.liquidity) for f in fills(ev)] == [("s", D("105"), Liquidity.TAKER)]
    ev = v.on_bar(bar(180, "88", "89", "80", "85"))  # gaps below the sell stop
    assert [(f.client_order_id, f.price) for f in fills(ev)] == [("ss", D("88"))]


def test_stop_limit_fills_at_trigger_within_limit_else_rests_as_limit():
    v = venue()
    v.submit(order("in", kind="stop_limit", stop="105", price="106"))
    v.submit(order("out", kind="stop_limit", stop="105", price="106", qty="2"))
    ev = v.on_bar(bar(60, "100", "106", "99", "105"))
    assert [(f.client_order_id, f.price) for f in fills(ev)] == [("in", D("105")), ("out", D("105"))]
    v.submit(order("gap", kind="stop_limit", stop="110", price="111"))
    assert fills(v.on_bar(bar(120, "115", "116", "112", "113"))) == []  # triggered at 115 > limit: rests
    assert v.open_orders()[0].client_order_id == "gap"
    (f,) = fills(v.on_bar(bar(180, "113", "114", "110", "111")))
    assert (f.price, f.liquidity) == (D("111"), Liquidity.MAKER)


# ------------------------------------------------------------------ rejections


def test_duplicate_client_order_id_rejected_even_after_the_first_closed():
    v = venue()
    v.submit(order("dup"))
    assert statuses(v.submit(order("dup", qty="3"))) == [("dup", "rejected", "duplicate_client_order_id")]
    v.on_bar(bar(60, "100", "100", "100", "100"))
    assert statuses(v.submit(order("dup")))[0][2] == "duplicate_client_order_id"
    assert statuses(v.submit(order("bad", qty="0")))[0][2] == "invalid_quantity"
    assert statuses(v.submit(order("bad")))[0][2] == "duplicate_client_order_id"


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        (dict(qty="0"), "invalid_quantity"),
        (dict(qty="-1"), "invalid_quantity"),
        (dict(qty="NaN"), "invalid_quantity"),
        (dict(qty="Infinity"), "invalid_quantity"),
        (dict(qty="0.00001"), "quantity_not_on_lot_size"),
        (dict(kind="limit"), "missing_price"),
        (dict(kind="limit", price="0"), "invalid_price"),
        (dict(kind="limit", price="-5"), "invalid_price"),
        (dict(kind="limit", price="NaN"), "invalid_price"),
        (dict(kind="limit", price="100.005"), "price_not_on_tick_size"),
        (dict(kind="market", price="100"), "unexpected_price"),
        (dict(kind="stop"), "missing_stop_price"),
        (dict(kind="stop", stop="-1"), "invalid_stop_price"),
        (dict(kind="stop_limit", price="100", stop="100.001"), "stop_price_not_on_tick_size"),
        (dict(kind="limit", price="100", stop="99"), "unexpected_stop_price"),
        (dict(kind="market", post_only=True), "post_only_requires_gtc_limit"),
        (dict(kind="limit", price="100", tif="ioc", post_only=True), "post_only_requires_gtc_limit"),
        (dict(exchange="binance"), "wrong_exchange"),
    ],
)
def test_invalid_orders_rejected_with_reason(kwargs, reason):
    v = venue()
    ev = v.submit(order("x", **kwargs))
    assert len(ev) == 1 and isinstance(ev[0], OrderEvent)
    assert (ev[0].status, ev[0].reason) == (OrderStatus.REJECTED, reason)
    assert v.open_orders() == []


def test_float_quantity_unknown_symbol_and_min_notional_rejected():
    inst = {SYM: Instrument("sim", SYM, tick_size=D("0.5"), lot_size=D("0.1"), min_notional=D("10"))}
    v = venue(instruments=inst)
    o = order("f")
    ev = v.submit(type(o)(**{**{s: getattr(o, s) for s in o.__slots__}, "client_order_id": "float", "quantity": 1.0}))
    assert ev[0].reason == "invalid_quantity"
    assert v.submit(order("u", symbol="ETH/USDT"))[0].reason == "unknown_symbol"
    assert v.submit(order("n", kind="limit", price="99.5", qty="0.1"))[0].reason == "below_min_notional"
    assert v.submit(order("t", kind="limit", price="99.7", qty="1"))[0].reason == "price_not_on_tick_size"
    assert v.submit(order("ok", kind="limit", price="99.5", qty="1"))[0].status is OrderStatus.ACKNOWLEDGED


# ------------------------------------------------------------------ cancel / replace


def test_cancel_open_order_then_again_is_a_no_op_and_unknown_raises():
    v = venue()
    v.submit(order("c", kind="limit", price="90"))
    assert statuses(v.cancel("c", ts=5)) == [("c", "canceled", "canceled_by_client")]
    assert v.cancel("c", ts=6) == []
    assert fills(v.on_bar(bar(60, "89", "90", "80", "85"))) == []
    with pytest.raises(UnknownOrderError, match="nope"):
        v.cancel("nope", ts=0)


def test_replace_priority_rules_under_a_volume_cap():
    # Only 1 unit per bar is available; who gets it shows the queue order.
    v = venue(max_participation=0.1)
    v.submit(order("a", kind="limit", price="100", qty="2"))
    v.submit(order("b", kind="limit", price="100", qty="2"))
    v.replace("a", D("1.5"), None, ts=1)  # decrease: keeps priority
    (f,) = fills(v.on_bar(bar(60, "101", "101", "99", "100", v="10")))
    assert f.client_order_id == "a" and f.quantity == D("1")
    v.replace("a", D("3"), None, ts=2)  # increase: back of the queue
    (f,) = fills(v.on_bar(bar(120, "101", "101", "99", "100", v="10")))
    assert f.client_order_id == "b"
    ev = v.replace("b", None, D("99"), ts=3)  # price change: back of the queue
    assert statuses(ev) == [("b", "partially_filled", "replaced")]
    assert [o.client_order_id for o in v.open_orders()] == ["a", "b"]
    assert v.open_orders()[0].quantity == D("3")


def test_replace_errors_and_post_only_refusal():
    v = venue()
    v.on_bar(bar(0, "100", "100", "100", "100"))
    v.submit(order("p", kind="limit", price="98", post_only=True))
    ev = v.replace("p", None, D("101"), ts=1)
    assert statuses(ev) == [("p", "ack", "replace_rejected_post_only_would_cross")]
    assert v.open_orders()[0].price == D("98")
    with pytest.raises(InvalidReplaceError, match="new_quantity"):
        v.replace("p", D("-1"), None, ts=1)
    with pytest.raises(InvalidReplaceError, match="tick size"):
        v.replace("p", None, D("97.001"), ts=1)
    v.submit(order("m"))
    with pytest.raises(InvalidReplaceError, match="new_price"):
        v.replace("m", None, D("97"), ts=1)
    v.on_bar(bar(60, "100", "100", "100", "100"))
    with pytest.raises(OrderClosedError):
        v.replace("m", D("2"), None, ts=2)


# ------------------------------------------------------------------ partial fills, latency, determinism


def test_participation_cap_splits_market_order_over_bars():
    v = venue(max_participation=0.1)
    v.submit(order("big", qty="10"))
    ev = v.on_bar(bar(60, "100", "101", "99", "100", v="50"))
    assert [(e.client_order_id, e.status.value) for e in ev if isinstance(e, OrderEvent)] == [("big", "partially_filled")]
    assert fills(ev)[0].quantity == D("5")
    ev = v.on_bar(bar(120, "102", "103", "101", "102", v="80"))
    (f,) = fills(ev)
    assert (f.quantity, f.price, f.fill_id) == (D("5"), D("102"), stable_id("fill", "big", 2))
    assert ev[-1].status is OrderStatus.FILLED and ev[-1].filled_quantity == D("10")
    v.submit(order("ioc", qty="10", tif="ioc"))
    v.submit(order("fok", qty="1", tif="fok"))
    ev = v.on_bar(bar(180, "100", "100", "100", "100", v="40"))
    assert statuses(ev) == [("ioc", "fill", "100"), ("ioc", "partially_filled", None),
                            ("ioc", "canceled", "ioc_remainder_canceled"), ("fok", "canceled", "fok_not_fillable")]


def test_order_to_venue_latency_delays_arrival_and_fill_latency_delays_reports():
    v = venue(latency=LatencyModel(order_to_venue_ns=90, venue_to_fill_ns=7))
    ev = v.submit(order("l", ts=10))
    assert statuses(ev) == [("l", "new", None)] and ev[0].ts == 10
    assert v.on_bar(bar(60, "100", "100", "100", "100")) == []  # opens before the order arrives at 100
    ev = v.on_bar(bar(120, "101", "101", "101", "101"))
    assert statuses(ev) == [("l", "ack", None), ("l", "fill", "101"), ("l", "filled", None)]
    assert ev[0].ts == 100 and ev[1].ts == 127


def test_lognormal_latency_is_deterministic_for_a_seed():
    draws = [LatencyModel(1_000_000, 500_000, "lognormal", seed=3) for _ in range(2)]
    a = [(m.order_to_venue(), m.venue_to_fill()) for m in draws[:1] for _ in range(50)]
    b = [(m.order_to_venue(), m.venue_to_fill()) for m in draws[1:] for _ in range(50)]
    assert a == b and len({x for x, _ in a}) > 40
    other = LatencyModel(1_000_000, 500_000, "lognormal", seed=4)
    assert [other.order_to_venue() for _ in range(5)] != [x for x, _ in a[:5]]
    with pytest.raises(CostModelError):
        LatencyModel(distribution="uniform")
    with pytest.raises(CostModelError):
        LatencyModel(order_to_venue_ns=-1)


def test_same_inputs_same_events():
    def run():
        v = PaperVenue(latency=LatencyModel(5, 5, "lognormal", seed=1))
        out = []
        for i in range(5):
            out += v.submit(order(f"o{i}", side="buy" if i % 2 else "sell", qty=str(i + 1), ts=i))
            out += v.on_bar(bar(60 * (i + 1), str(100 + i), str(102 + i), str(99 + i), str(101 + i)))
        return out

    a, b = run(), run()
    assert a == b and any(isinstance(e, Fill) for e in a)


def test_bad_bars_and_config_raise_clear_errors():
    v = venue()
    with pytest.raises(InvalidMarketDataError, match="low"):
        v.on_bar(bar(0, "100", "101", "100.5", "100"))
    with pytest.raises(InvalidMarketDataError, match="volume"):
        v.on_bar(bar(0, "100", "101", "99", "100", v="-1"))
    with pytest.raises(VenueConfigError):
        PaperVenue(fill_mode="ticks")
    with pytest.raises(VenueConfigError):
        PaperVenue(max_participation=0)


def test_book_data_in_bar_mode_is_counted_not_used():
    from venue_testkit import book, tick

    v = venue()
    assert v.on_book(book(1, [("99", "1")], [("100", "1")])) == []
    assert v.on_tick(tick(2, "100", "1")) == []
    assert v.ignored_data == 2
