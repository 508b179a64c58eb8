"""Pre-trade checks: for each, an order just inside the limit passes and one just outside is rejected
with the right reason code; the order of the checks decides which reason wins."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading.records import Instrument, OrderStatus, OrderType, TimeInForce
from trading.risk import TradingState


def ok(d):
    assert d.approved, d
    return d


def rejected(d, reason):
    assert not d.approved and d.reason == reason, d
    return d


# --- 1. trading state ---------------------------------------------------------------------------

def test_account_halted_rejects_everything(harness):
    h = harness()
    h.buy_position("2", "100")
    h.engine.set_state("account:acc", TradingState.HALTED, "alice", "maintenance")
    rejected(h.check("sell", "1", "100"), "account_halted")  # even a reducing order
    h.engine.resume("account:acc", "alice", "done")
    ok(h.check("sell", "1", "100"))


def test_strategy_halted_only_blocks_that_strategy(harness):
    h = harness()
    h.engine.set_state("strategy:s1", TradingState.HALTED, "alice", "bad fills")
    rejected(h.check(strategy="s1"), "strategy_halted")
    ok(h.check(strategy="s2"))


def test_symbol_halt_only_blocks_that_symbol(harness):
    h = harness(prices={"BTC/USDT": "100", "ETH/USDT": "10"})
    h.engine.data_quality_halt("BTC/USDT", "crossed book")
    d = rejected(h.check(), "symbol_halted")
    assert "crossed book" in d.detail
    ok(h.check(symbol="ETH/USDT", price="10"))
    assert h.engine.state is TradingState.ACTIVE


@pytest.mark.parametrize("scope_, reason", [("account:acc", "account_reducing"), ("strategy:s1", "strategy_reducing")])
def test_reducing_allows_only_orders_that_reduce(harness, scope_, reason):
    h = harness()
    h.buy_position("5", "100")
    h.engine.set_state(scope_, TradingState.REDUCING, "alice", "wind down")
    rejected(h.check("buy", "1", "100"), reason)  # adds to the long
    rejected(h.check("sell", "5.0001", "100"), reason)  # would cross to short
    ok(h.check("sell", "3", "100"))
    ok(h.check("sell", "2", "100.01"))  # 3 + 2 pending = the whole position
    rejected(h.check("sell", "0.0001", "100.02"), reason)  # pending sells already close it all


def test_wrong_account_is_rejected_first(harness):
    h = harness()
    rejected(h.check(account="other"), "wrong_account")


# --- 2. restricted symbols ----------------------------------------------------------------------

def test_restricted_symbol(harness):
    h = harness({"restricted_symbols": ["DOGE/USDT"]}, prices={"BTC/USDT": "100", "DOGE/USDT": "0.1"})
    rejected(h.check(symbol="DOGE/USDT", price="0.1"), "restricted_symbol")
    ok(h.check(symbol="BTC/USDT"))


# --- 3. quantity / price sanity and reference price ------------------------------------------------

@pytest.mark.parametrize("qty", ["0", "-1", "NaN", "Infinity", 1.0])
def test_invalid_quantity(harness, qty):
    h = harness()
    q = qty if isinstance(qty, float) else Decimal(qty)
    rejected(h.check(qty=q), "invalid_quantity")


def test_lot_and_tick_size(harness):
    h = harness({"symbols": {"BTC/USDT": {"lot_size": "0.001", "tick_size": "0.5"}}})
    ok(h.check(qty="0.002", price="100.5"))
    rejected(h.check(qty="0.0015", price="100.5"), "lot_size")
    rejected(h.check(qty="0.002", price="100.25"), "tick_size")


def test_lot_and_tick_from_instrument_when_limits_have_none(harness):
    inst = Instrument("paper", "BTC/USDT", tick_size=Decimal("0.1"), lot_size=Decimal("0.01"),
                      min_notional=Decimal("5"))
    h = harness(instruments=[inst])
    ok(h.check(qty="0.05", price="100.1"))  # notional 5.005
    rejected(h.check(qty="0.055", price="100.1"), "lot_size")
    rejected(h.check(qty="0.05", price="100.05"), "tick_size")
    rejected(h.check(qty="0.04", price="100.1"), "min_notional")


@pytest.mark.parametrize("price", ["0", "-100", "NaN"])
def test_invalid_price(harness, price):
    h = harness()
    rejected(h.check(price=Decimal(price), otype=OrderType.LIMIT), "invalid_price")


def test_limit_order_needs_a_price_and_stops_a_stop_price(harness):
    h = harness()
    rejected(h.check(price=None, otype=OrderType.LIMIT), "invalid_price")
    rejected(h.check(price=None, otype=OrderType.STOP), "invalid_price")
    ok(h.check(price=None, otype=OrderType.STOP, stop_price=Decimal("95")))
    ok(h.check(price="96", otype=OrderType.STOP_LIMIT, stop_price=Decimal("95")))


def test_market_order_needs_a_reference_price(harness):
    h = harness(prices={})
    rejected(h.check(price=None), "no_reference_price")
    rejected(h.check(price="100"), "no_reference_price")  # limit orders too: the collar needs it
    h.price("BTC/USDT", "100")
    ok(h.check(price=None))


def test_stale_reference_price_fails_closed(harness):
    h = harness({"breakers": {"stale_after_s": 5}})
    h.clock.advance(5)
    ok(h.check(price=None))
    h.clock.advance(0.001)
    rejected(h.check(price=None), "stale_price")
    h.price("BTC/USDT", "100")
    ok(h.check(qty="2", price=None))


# --- 4. price collar --------------------------------------------------------------------------

def test_price_collar_per_symbol(harness):
    h = harness({"symbols": {"BTC/USDT": {"collar_bps": 100}}})
    ioc = TimeInForce.IOC  # IOC: the approved probes do not rest (and so cannot self-trade each other)
    ok(h.check("buy", price="101", time_in_force=ioc))  # exactly 100 bps
    rejected(h.check("buy", price="101.01", time_in_force=ioc), "price_collar")
    ok(h.check("sell", price="99", time_in_force=ioc))
    rejected(h.check("sell", price="98.99", time_in_force=ioc), "price_collar")


def test_price_collar_default(harness):
    h = harness({"symbol_defaults": {"collar_bps": 500}}, prices={"ETH/USDT": "200"})
    ok(h.check(symbol="ETH/USDT", price="210"))
    rejected(h.check(symbol="ETH/USDT", price="210.01"), "price_collar")


def test_collar_uses_latest_price(harness):
    h = harness({"symbols": {"BTC/USDT": {"collar_bps": 100}}})
    rejected(h.check(price="105"), "price_collar")
    h.price("BTC/USDT", "104")
    ok(h.check(price="105"))


# --- 5. order size ----------------------------------------------------------------------------

def test_max_order_quantity(harness):
    h = harness({"symbols": {"BTC/USDT": {"max_order_quantity": 5}}})
    ok(h.check(qty="5"))
    rejected(h.check(qty="5.0001"), "max_order_quantity")


def test_max_order_notional_uses_limit_or_reference_price(harness):
    h = harness({"symbol_defaults": {"max_order_notional": 1000}})
    ok(h.check(qty="10", price="100"))
    rejected(h.check(qty="10.0001", price="100"), "max_order_notional")
    rejected(h.check(qty="9.95", price="100.6"), "max_order_notional")
    ok(h.check(qty="10", price=None))  # market: at the reference price 100
    rejected(h.check(qty="10.01", price=None), "max_order_notional")


# --- 6. position per symbol -------------------------------------------------------------------

def test_max_position_counts_position_and_same_side_open_orders(harness):
    h = harness({"symbols": {"BTC/USDT": {"max_position": 10}}})
    h.buy_position("4", "100")
    h.place("buy", "3", "100")  # open: 4 + 3
    ok(h.check("buy", "3", "99"))  # 4 + 3 + 3 = 10
    rejected(h.check("buy", "0.0001", "99.5"), "max_position")
    ok(h.check("sell", "14", "101"))  # short side: 4 - 14 = -10
    rejected(h.check("sell", "0.0001", "101.5"), "max_position")


def test_max_position_never_blocks_a_reducing_order(harness):
    h = harness({"symbols": {"BTC/USDT": {"max_position": 10}}})
    h.buy_position("8", "100")
    h.engine.update_limits(h.engine.limits.with_overrides({"symbols": {"BTC/USDT": {"max_position": 5}}}))
    rejected(h.check("buy", "0.0001"), "max_position")
    ok(h.check("sell", "1", "100"))  # 7 is still over 5, but smaller than 8


def test_open_order_stops_counting_after_terminal_event(harness):
    h = harness({"symbols": {"BTC/USDT": {"max_position": 10}}})
    o = h.place("buy", "10", "100")
    rejected(h.check("buy", "1", "99"), "max_position")
    h.event(o, OrderStatus.ACKNOWLEDGED)
    rejected(h.check("buy", "1", "99"), "max_position")
    h.event(o, OrderStatus.CANCELED)
    ok(h.check("buy", "1", "99"))


# --- 7. exposure ------------------------------------------------------------------------------

def test_account_gross_exposure(harness):
    h = harness({"account": {"max_gross_exposure": 1000}})
    h.place("buy", "6", "100")
    ok(h.check("buy", "4", "100"))
    rejected(h.check("buy", "0.0001", "100.1"), "max_gross_exposure")


def test_net_exposure_is_worst_case_over_open_orders(harness):
    h = harness({"account": {"max_net_exposure": 500}}, prices={"BTC/USDT": "100", "ETH/USDT": "100"})
    h.place("buy", "5", "100")
    rejected(h.check("buy", "0.0001", "100", symbol="ETH/USDT"), "max_net_exposure")
    ok(h.check("sell", "5", "100", symbol="ETH/USDT"))  # hedge: worst case stays 500 either way
    rejected(h.check("sell", "5.0001", "100.5", symbol="ETH/USDT"), "max_net_exposure")


def test_strategy_exposure(harness):
    h = harness({"strategies": {"s1": {"max_gross_exposure": 500}}})
    ok(h.check("buy", "5", "100", strategy="s1"))
    rejected(h.check("buy", "0.0001", "100", strategy="s1"), "max_gross_exposure")
    ok(h.check("buy", "7", "100", strategy="s2"))


def test_asset_exposure_spans_quote_currencies(harness):
    h = harness({"assets": {"BTC": {"max_gross_exposure": 1000}}}, prices={"BTC/USDT": "100", "BTC/EUR": "100"})
    h.place("buy", "6", "100", symbol="BTC/USDT")
    ok(h.check("buy", "4", "100", symbol="BTC/EUR"))
    d = rejected(h.check("buy", "0.0001", "100", symbol="BTC/EUR"), "max_gross_exposure")
    assert "asset BTC" in d.detail


def test_sector_exposure_and_missing_sector(harness):
    h = harness({"sector_map": {"BTC/USDT": "majors", "ETH/USDT": "majors"},
                 "sectors": {"majors": {"max_net_exposure": 1000}}},
                prices={"BTC/USDT": "100", "ETH/USDT": "100", "SOL/USDT": "10"})
    h.place("buy", "6", "100", symbol="BTC/USDT")
    ok(h.check("buy", "4", "100", symbol="ETH/USDT"))
    d = rejected(h.check("buy", "0.0001", "100", symbol="ETH/USDT"), "max_net_exposure")
    assert "sector majors" in d.detail
    rejected(h.check("buy", "1", "10", symbol="SOL/USDT"), "no_sector")


def test_exposure_limit_does_not_block_reducing_orders(harness):
    h = harness({"account": {"max_gross_exposure": 1000}})
    h.buy_position("10", "100")
    h.price("BTC/USDT", "110")  # now 1100 > 1000
    rejected(h.check("buy", "0.0001", "110"), "max_gross_exposure")
    ok(h.check("sell", "1", "110"))


# --- 8. open orders ---------------------------------------------------------------------------

def test_max_open_orders_account_and_strategy(harness):
    h = harness({"account": {"max_open_orders": 3}, "strategies": {"s1": {"max_open_orders": 2}}})
    a = h.place(strategy="s1", price="99")
    h.place(strategy="s1", price="98")
    d = rejected(h.check(strategy="s1", price="97"), "max_open_orders")
    assert "strategy s1" in d.detail
    h.place(strategy="s2", price="97")
    d = rejected(h.check(strategy="s2", price="96"), "max_open_orders")
    assert "account" in d.detail
    h.event(a, OrderStatus.FILLED, a.quantity)
    h.fill(a)
    ok(h.check(strategy="s2", price="96"))


# --- 9. order rate ----------------------------------------------------------------------------

def test_rate_limit_per_second_sliding_window(harness):
    h = harness({"strategy_defaults": {"max_orders_per_second": 2}})
    h.place(price="99")
    h.clock.advance(0.5)
    h.place(price="98")
    rejected(h.check(price="97"), "max_orders_per_second")
    ok(h.check(price="97", strategy="other"))  # per strategy
    h.clock.advance(0.5)  # the first order left the window
    ok(h.check(price="97"))


def test_rate_limit_per_minute(harness):
    h = harness({"strategies": {"s1": {"max_orders_per_minute": 3}}})
    for i in range(3):
        h.place(price=str(99 - i))
        h.clock.advance(10)
    rejected(h.check(price="95"), "max_orders_per_minute")
    h.clock.advance(30)  # first order now exactly 60 s old: out of the window
    ok(h.check(price="95"))


# --- 10. duplicates ---------------------------------------------------------------------------

def test_duplicate_client_order_id(harness):
    h = harness()
    h.place(cid="abc", price="99")
    rejected(h.check(cid="abc", price="98"), "duplicate_client_order_id")


def test_identical_order_within_window(harness):
    h = harness({"duplicate_window_s": 2})
    h.place(qty="1", price="99")
    rejected(h.check(qty="1", price="99"), "duplicate_order")
    ok(h.check(qty="1", price="98.99"))
    h.clock.advance(2)
    ok(h.check(qty="1", price="99"))


# --- 11. self-trade prevention ----------------------------------------------------------------

def test_self_trade_against_own_resting_orders(harness):
    h = harness()
    ask = h.place("sell", "1", "101", strategy="mm")
    h.place("buy", "1", "99", strategy="mm")
    ioc = TimeInForce.IOC
    ok(h.check("buy", "1", "100.99", strategy="other", time_in_force=ioc))
    rejected(h.check("buy", "1", "101", strategy="other"), "self_trade")
    rejected(h.check("buy", "1", None, strategy="other"), "self_trade")  # market crosses anything
    ok(h.check("sell", "1", "99.01", strategy="other", time_in_force=ioc))
    rejected(h.check("sell", "1", "99", strategy="other"), "self_trade")
    h.event(ask, OrderStatus.CANCELED)
    ok(h.check("buy", "1", "101", strategy="other"))


def test_ioc_orders_do_not_rest(harness):
    h = harness()
    h.place("sell", "1", "101", time_in_force=TimeInForce.IOC)
    ok(h.check("buy", "1", "101"))


# --- 12. margin and leverage ------------------------------------------------------------------

def test_insufficient_margin_counts_reserved_cash(harness):
    h = harness(cash="1000")
    h.place("buy", "6", "100")  # reserves 600
    ok(h.check("buy", "4", "100"))  # 1000 in total
    rejected(h.check("buy", "0.0001", "100"), "insufficient_margin")


def test_sell_to_close_needs_no_margin(harness):
    h = harness(cash="1000")
    h.buy_position("10", "100")  # all cash used
    rejected(h.check("buy", "0.0001", "100"), "insufficient_margin")
    ok(h.check("sell", "10", "100"))


def test_max_leverage(harness):
    h = harness({"account": {"margin_rate": 0.1, "max_leverage": 2}}, cash="1000")
    h.place("buy", "15", "100")
    ok(h.check("buy", "5", "100"))  # gross 2000 / equity 1000
    rejected(h.check("buy", "0.0001", "100"), "max_leverage")


# --- order of the checks ----------------------------------------------------------------------

def test_first_failed_check_wins(harness):
    h = harness({"restricted_symbols": ["BTC/USDT"], "symbols": {"BTC/USDT": {"max_order_quantity": 1}}})
    rejected(h.check(qty="100"), "restricted_symbol")
    h = harness({"symbols": {"BTC/USDT": {"max_order_quantity": 1, "collar_bps": 10}}})
    rejected(h.check(qty="100", price="200"), "price_collar")
    rejected(h.check(qty="-1", price="200"), "invalid_quantity")


def test_rejections_are_counted(harness):
    h = harness({"restricted_symbols": ["BTC/USDT"]})
    h.check()
    h.check()
    assert h.engine.metrics()["counters"]["rejected:restricted_symbol"] == 2


def test_self_trade_book_handles_several_orders_at_one_price(harness):
    h = harness()
    a = h.place("sell", "1", "101")
    b = h.place("sell", "2", "101")
    h.event(a, OrderStatus.CANCELED)
    assert h.check("buy", "1", "101").reason == "self_trade"  # b still rests at 101
    h.fill(b)  # fully filled: no longer resting even before its terminal event
    assert h.engine.open_order_ids() == [b.client_order_id]
    ok(h.check("buy", "1", "101"))
