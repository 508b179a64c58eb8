"""Real-time P&L: realised/unrealised per position, strategy and account; idempotent fills; bad prices
never produce numbers; daily P&L with a configurable day boundary."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from trading.records import NS_PER_S, Fill, Liquidity, OrderEvent, OrderStatus, Side
from trading.risk import RiskInputError


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()) * NS_PER_S


def test_realised_and_unrealised_pnl(harness):
    h = harness(cash="10000")
    o = h.buy_position("2", "100")
    h.price("BTC/USDT", "110")
    m = h.engine.metrics()
    assert m["unrealized_pnl"] == pytest.approx(20) and m["realized_pnl"] == 0
    assert m["equity"] == pytest.approx(10020) and m["gross_exposure"] == pytest.approx(220)
    s = h.place("sell", "1", "120", strategy="s1")
    h.fill(s, fee="0.5")
    m = h.engine.metrics()
    assert m["realized_pnl"] == pytest.approx(20)
    assert m["unrealized_pnl"] == pytest.approx(10)  # 1 left at avg 100, marked at 110
    assert m["fees"] == pytest.approx(0.5)
    assert m["cash"] == pytest.approx(10000 - 200 + 120 - 0.5)
    assert m["total_pnl"] == pytest.approx(20 + 10 - 0.5)
    assert m["strategies"]["s1"]["pnl"] == pytest.approx(29.5)
    [pos] = m["positions"]
    assert pos["quantity"] == Decimal("1") and pos["avg_price"] == Decimal("100")
    assert pos["unrealized_pnl"] == pytest.approx(10)
    assert o.strategy == "s1"


def test_position_flip_and_strategy_attribution(harness):
    h = harness(cash="10000")
    h.buy_position("1", "100", strategy="a")
    h.buy_position("3", "110", strategy="a", side="sell")  # closes 1 (+10), opens short 2 at 110
    h.buy_position("1", "100", strategy="b")
    [pa, pb] = sorted(h.engine.positions(), key=lambda p: p.strategy)
    assert (pa.quantity, pa.avg_price, pa.realized_pnl) == (Decimal(-2), Decimal(110), Decimal(10))
    assert pb.quantity == Decimal(1)
    h.price("BTC/USDT", "105")
    m = h.engine.metrics()
    assert m["strategies"]["a"]["unrealized_pnl"] == pytest.approx(10)  # short 2 from 110 to 105
    assert m["strategies"]["b"]["unrealized_pnl"] == pytest.approx(5)
    assert m["net_exposure"] == pytest.approx(-105)  # account: -2 + 1


def test_fill_is_idempotent(harness):
    h = harness(cash="10000")
    o = h.place("buy", "1", "100")
    f = h.fill(o)
    h.engine.on_fill(f)
    assert h.engine.positions()[0].quantity == Decimal(1)
    assert h.engine.metrics()["counters"]["fill_duplicate"] == 1


def test_fee_in_base_currency_is_valued_at_fill_price(harness):
    h = harness(cash="10000")
    o = h.place("buy", "1", "100")
    h.engine.on_fill(Fill("f", o.client_order_id, "acc", "s1", "paper", "BTC/USDT", Side.BUY, Decimal(100),
                          Decimal(1), Decimal("0.001"), "BTC", Liquidity.TAKER, h.clock.t))
    assert h.engine.metrics()["fees"] == pytest.approx(0.1)


@pytest.mark.parametrize("field, value", [("quantity", Decimal(0)), ("price", Decimal(-1)),
                                          ("price", Decimal("NaN")), ("account", "other")])
def test_bad_fill_raises_naming_the_field(harness, field, value):
    h = harness()
    kw = dict(fill_id="f", client_order_id="x", account="acc", strategy="s1", exchange="paper", symbol="BTC/USDT",
              side=Side.BUY, price=Decimal(100), quantity=Decimal(1), fee=Decimal(0), fee_currency="USDT",
              liquidity=Liquidity.TAKER, ts=h.clock.t)
    kw[field] = value
    with pytest.raises(RiskInputError, match=field):
        h.engine.on_fill(Fill(**kw))


def test_order_event_for_other_account_raises(harness):
    h = harness()
    with pytest.raises(RiskInputError, match="account"):
        h.engine.on_order_event(OrderEvent("x", "other", "s1", "BTC/USDT", OrderStatus.CANCELED, Decimal(0),
                                           Decimal(1), h.clock.t))


def test_terminal_event_before_its_fills_keeps_exposure_pending(harness):
    h = harness({"symbols": {"BTC/USDT": {"max_position": 10}}})
    o = h.place("buy", "10", "100")
    h.event(o, OrderStatus.FILLED, "10")  # the venue says filled; our fills are still in flight
    assert h.engine.metrics()["open_orders"] == 0
    assert h.check("buy", "1", "99").reason == "max_position"  # the in-flight 10 still count
    h.fill(o, qty="4")
    h.fill(o, qty="6")
    assert h.check("buy", "1", "99").reason == "max_position"  # now as a position
    assert h.engine.positions()[0].quantity == Decimal(10)


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal(0), Decimal(-5), Decimal("Infinity"), Decimal("sNaN")])
def test_bad_price_never_produces_pnl(harness, bad):
    h = harness(cash="10000")
    h.buy_position("1", "100")
    before = h.engine.metrics()
    h.price("BTC/USDT", bad)
    after = h.engine.metrics()
    assert after["equity"] == before["equity"] and after["unrealized_pnl"] == before["unrealized_pnl"]
    assert after["counters"]["price_invalid"] == 1


def test_first_bad_price_leaves_no_reference(harness):
    h = harness(prices={})
    h.price("BTC/USDT", Decimal("NaN"))
    assert h.check(price=None).reason == "no_reference_price"


def test_out_of_order_and_stale_price_updates_are_ignored(harness):
    h = harness({"breakers": {"stale_after_s": 10}}, cash="10000")
    h.buy_position("1", "100")
    h.clock.advance(1)
    h.price("BTC/USDT", "101")
    h.price("BTC/USDT", "150", ts=h.clock.t - NS_PER_S // 2)  # older than the last one
    h.price("BTC/USDT", "150", ts=h.clock.t - 11 * NS_PER_S)  # stale on arrival
    m = h.engine.metrics()
    assert m["unrealized_pnl"] == pytest.approx(1)
    assert m["counters"]["price_out_of_order"] == 2  # the stale one is also older
    h2 = harness({"breakers": {"stale_after_s": 10}}, prices={})
    h2.price("BTC/USDT", "150", ts=h2.clock.t - 11 * NS_PER_S)
    assert h2.engine.metrics()["counters"]["price_stale"] == 1
    assert h2.check(price=None).reason == "no_reference_price"


def test_daily_pnl_resets_at_the_configured_utc_hour(harness):
    h = harness({"drawdown": {"day_start_hour_utc": 8}}, cash="10000", t0=ns("2024-03-01T07:00:00"))
    h.buy_position("10", "100")
    h.price("BTC/USDT", "105")
    assert h.engine.metrics()["daily_pnl"] == pytest.approx(50)
    h.clock.t = ns("2024-03-01T07:59:59")
    h.price("BTC/USDT", "106")
    assert h.engine.metrics()["daily_pnl"] == pytest.approx(60)
    h.clock.t = ns("2024-03-01T08:00:00")  # new day: the baseline is the equity at the boundary
    h.price("BTC/USDT", "104")
    m = h.engine.metrics()
    assert m["daily_pnl"] == pytest.approx(-20) and m["total_pnl"] == pytest.approx(40)
    h.clock.t = ns("2024-03-02T07:59:59")
    h.price("BTC/USDT", "103")
    assert h.engine.metrics()["daily_pnl"] == pytest.approx(-30)


def test_day_boundary_at_midnight_by_default(harness):
    h = harness(cash="10000", t0=ns("2024-03-01T23:00:00"))
    h.buy_position("10", "100")
    h.price("BTC/USDT", "101")
    h.clock.t = ns("2024-03-02T00:00:00")
    h.price("BTC/USDT", "102")
    assert h.engine.metrics()["daily_pnl"] == pytest.approx(10)


def test_changing_the_day_start_hour_at_runtime(harness):
    h = harness(cash="10000", t0=ns("2024-03-01T07:00:00"))
    h.buy_position("10", "100")
    h.price("BTC/USDT", "101")
    h.engine.update_limits(h.engine.limits.with_overrides({"drawdown": {"day_start_hour_utc": 8}}))
    h.clock.t = ns("2024-03-01T07:59:00")
    h.price("BTC/USDT", "102")
    assert h.engine.metrics()["daily_pnl"] == pytest.approx(20)  # same day, baseline kept
    h.clock.t = ns("2024-03-01T08:00:00")
    h.price("BTC/USDT", "103")
    assert h.engine.metrics()["daily_pnl"] == pytest.approx(10)


def test_margin_metrics(harness):
    h = harness({"account": {"margin_rate": 0.5}}, cash="10000")
    h.buy_position("10", "100")
    h.place("buy", "5", "100")
    m = h.engine.metrics()
    assert m["margin_used"] == pytest.approx(500) and m["reserved"] == pytest.approx(250)
    assert m["margin_usage"] == pytest.approx(750 / 10000)
    assert m["leverage"] == pytest.approx(1000 / 10000)
    assert m["worst_case_gross_exposure"] == pytest.approx(1500)


def test_closing_to_flat_realises_everything(harness):
    h = harness(cash="10000")
    h.buy_position("2", "100")
    h.buy_position("2", "90", side="sell")
    assert h.engine.positions() == []
    m = h.engine.metrics()
    assert m["realized_pnl"] == pytest.approx(-20) and m["unrealized_pnl"] == pytest.approx(0)
    assert m["gross_exposure"] == 0 and m["equity"] == pytest.approx(9980)


def test_fill_without_an_approved_order_still_counts(harness):
    h = harness(cash="10000", prices={})
    h.engine.on_fill(Fill("manual-1", "not-ours", "acc", "manual", "paper", "ETH/USDT", Side.BUY, Decimal(50),
                          Decimal(2), Decimal(0), "USDT", Liquidity.TAKER, h.clock.t))
    m = h.engine.metrics()
    assert m["counters"]["fill_without_open_order"] == 1
    assert m["gross_exposure"] == pytest.approx(100)  # marked at its own fill price until a price arrives
    assert h.check(symbol="ETH/USDT", price="50").approved
