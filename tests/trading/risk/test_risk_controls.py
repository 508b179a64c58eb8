"""Drawdown tiers, daily loss limit, circuit breakers, kill switch and operator resume."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from trading.records import OrderStatus, OrderType, Side
from trading.risk import RiskInputError, TradingState

ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED

TIERS = {"reduce_at": 0.05, "size_multiplier": 0.5, "stop_entries_at": 0.10, "flatten_at": 0.20}


def tiered(harness, **extra):
    """Cash 2000, long 10 BTC at 100: equity = 1000 + 10 * price, so price 90/80/60 = 5%/10%/20% drawdown."""
    h = harness({"drawdown": TIERS, **extra}, cash="2000")
    h.buy_position("10", "100")
    h.engine.update_limits(h.engine.limits.with_overrides({"symbols": {"BTC/USDT": {"max_order_quantity": 4}}}))
    return h


def test_d1_scales_order_sizes(harness):
    h = tiered(harness)
    h.price("BTC/USDT", "90.1")
    assert h.engine.size_multiplier() == Decimal(1)
    h.price("BTC/USDT", "90")
    assert h.engine.size_multiplier() == Decimal("0.5") and h.engine.state is ACTIVE
    assert h.engine.size_multiplier("s1") == Decimal("0.5")
    assert h.check("buy", "2", "90").approved
    assert h.check("buy", "2.0001", "90").reason == "max_order_quantity"
    assert h.check("sell", "4", "90.5").approved  # reducing orders are not scaled
    h.price("BTC/USDT", "95")  # back above D1: full size again
    assert h.engine.size_multiplier() == Decimal(1)


def test_d2_stops_new_entries_d3_flattens(harness):
    h = tiered(harness)
    resting = h.place("sell", "1", "105")  # a take-profit, still resting when the tiers hit
    h.price("BTC/USDT", "80")
    assert h.engine.state is REDUCING
    assert h.transitions[-1].scope == "account:acc" and "drawdown_stop_entries" in h.transitions[-1].reason
    assert h.check("buy", "1", "80").reason == "account_reducing"
    assert h.check("sell", "1", "80.5").approved
    h.price("BTC/USDT", "60")
    assert h.engine.state is HALTED and (h.transitions[-1].old, h.transitions[-1].new) == (REDUCING, HALTED)
    [req] = h.flattens
    assert resting.client_order_id in req.cancel_order_ids
    assert sum(o.quantity for o in req.orders) == Decimal(10) and all(o.side is Side.SELL for o in req.orders)
    assert h.check("sell", "1", "60").reason == "account_halted"
    for o in req.orders:  # the liquidator's own orders pass the halted account
        assert h.engine.check(o).approved
    h.price("BTC/USDT", "100")  # recovery does not lift D3: an operator must
    assert h.engine.state is HALTED and len(h.flattens) == 1


def test_operator_resume_rebases_the_drawdown(harness):
    h = tiered(harness)
    h.price("BTC/USDT", "80")
    assert h.engine.state is REDUCING
    h.engine.resume("account:acc", who="alice", reason="reviewed")
    t = h.transitions[-1]
    assert (t.new, t.who) == (ACTIVE, "alice") and "reviewed" in t.reason
    assert h.engine.metrics()["drawdown"] == 0
    h.price("BTC/USDT", "79")  # 1% below the new peak: no tier
    assert h.engine.state is ACTIVE


def test_strategy_drawdown_halts_only_that_strategy(harness):
    h = harness({"drawdown": TIERS, "strategies": {"s1": {"capital": 1000}}},
                cash="100000", prices={"BTC/USDT": "100", "ETH/USDT": "100"})
    h.buy_position("10", "100", strategy="s1")
    h.buy_position("10", "100", symbol="ETH/USDT", strategy="s2")
    h.price("BTC/USDT", "79")  # s1 lost 210 of 1000 capital: past D3; the account lost 0.2%
    assert h.engine.state_of("strategy:s1") is HALTED and h.engine.state is ACTIVE
    [req] = h.flattens
    assert req.scope == "strategy:s1" and {o.symbol for o in req.orders} == {"BTC/USDT"}
    assert h.check(strategy="s1", price="79").reason == "strategy_halted"
    assert h.check(strategy="s2", symbol="ETH/USDT").approved


def test_daily_loss_limit_resumes_next_day(harness):
    h = harness({"drawdown": {"daily_loss_limit": 50, "daily_loss_action": "reducing"},
                 "breakers": {"stale_after_s": 1e6}}, cash="10000")
    h.buy_position("10", "100")
    h.price("BTC/USDT", "95.01")
    assert h.engine.state is ACTIVE
    h.price("BTC/USDT", "95")
    assert h.engine.state is REDUCING and "daily_loss_limit" in h.transitions[-1].reason
    assert h.check("buy", "1", "95").reason == "account_reducing"
    h.clock.advance(86_400)
    assert h.check("buy", "1", "95").approved  # the check itself rolls the day
    assert h.transitions[-1].new is ACTIVE and "new trading day" in h.transitions[-1].reason


def test_daily_loss_limit_per_strategy_halts(harness):
    h = harness({"strategies": {"s1": {"daily_loss_limit": 20}}}, cash="10000")
    h.buy_position("10", "100", strategy="s1")
    h.price("BTC/USDT", "98")
    assert h.engine.state_of("strategy:s1") is HALTED and h.engine.state is ACTIVE


# --- circuit breakers -------------------------------------------------------------------------

def calm_prices(n: int, seed: int = 3) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(p) for p in 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))]


def prime(h, symbol, prices):
    for p in prices:
        h.clock.advance(1)
        h.price(symbol, Decimal(repr(round(p, 6))))


@pytest.mark.parametrize("k, halts", [(3.9, False), (4.1, True)])
def test_volatility_breaker_trips_beyond_n_sigma(harness, k, halts):
    window = 50
    h = harness({"breakers": {"volatility_sigma": 4, "volatility_window": window, "volatility_min_samples": 20}},
                prices={})
    prices = calm_prices(window + 1)
    prime(h, "BTC/USDT", prices)
    rounded = [float(Decimal(repr(round(p, 6)))) for p in prices]
    r = np.diff(np.log(rounded))
    jump = rounded[-1] * math.exp(r.mean() + k * r.std(ddof=1))
    h.clock.advance(1)
    h.price("BTC/USDT", Decimal(repr(round(jump, 6))))
    assert (h.engine.state_of("symbol:BTC/USDT") is HALTED) is halts
    assert h.engine.state is ACTIVE  # never the account


def test_volatility_halt_is_per_symbol_and_cools_down(harness):
    h = harness({"breakers": {"volatility_sigma": 5, "volatility_window": 50, "volatility_min_samples": 20,
                              "cooldown_s": 60}}, prices={})
    prime(h, "BTC/USDT", calm_prices(40))
    prime(h, "ETH/USDT", calm_prices(40, seed=4))
    h.price("BTC/USDT", Decimal(90))  # ~ -10%
    assert h.engine.state_of("symbol:BTC/USDT") is HALTED
    assert h.transitions[-1].scope == "symbol:BTC/USDT" and "volatility" in h.transitions[-1].reason
    assert h.check(price="90").reason == "symbol_halted"
    assert h.check(symbol="ETH/USDT", price=None).approved
    h.clock.advance(59.9)
    assert h.check(price="90").reason == "symbol_halted"
    h.clock.advance(0.1)
    h.price("BTC/USDT", Decimal(90))
    assert h.check(price="90").approved
    assert h.transitions[-1].new is ACTIVE and "cool-down" in h.transitions[-1].reason


def test_stale_data_halt_and_resume_on_fresh_data(harness):
    h = harness({"breakers": {"stale_after_s": 10}}, prices={"BTC/USDT": "100", "ETH/USDT": "10"})
    h.clock.advance(5)
    h.price("ETH/USDT", "10")
    h.clock.advance(6)  # BTC 11 s old, ETH 6 s old
    h.engine.evaluate()
    assert h.engine.state_of("symbol:BTC/USDT") is HALTED
    assert h.engine.state_of("symbol:ETH/USDT") is ACTIVE
    assert "stale_data" in h.transitions[-1].reason
    assert h.check(price=None).reason == "symbol_halted"
    assert h.engine.metrics()["stale_symbols"] == ["BTC/USDT"]
    h.price("BTC/USDT", "100")
    assert h.engine.state_of("symbol:BTC/USDT") is ACTIVE and "fresh data" in h.transitions[-1].reason
    assert h.check(price=None).approved


def test_data_quality_halt_needs_an_operator(harness):
    h = harness()
    h.engine.data_quality_halt("BTC/USDT", "price gap vs reference feed")
    h.price("BTC/USDT", "100")  # fresh data does not lift it
    assert h.check().reason == "symbol_halted"
    h.engine.resume("symbol:BTC/USDT", who="carol", reason="feed fixed")
    assert h.transitions[-1].who == "carol" and h.transitions[-1].new is ACTIVE
    assert h.check().approved


def test_resume_rejects_bad_scopes(harness):
    h = harness()
    for bad in ("BTC/USDT", "account:other", "desk:x", "strategy:"):
        with pytest.raises(RiskInputError):
            h.engine.resume(bad, who="x", reason="y")
    with pytest.raises(RiskInputError):
        h.engine.set_state("symbol:BTC/USDT", REDUCING, "x", "y")


# --- kill switch ------------------------------------------------------------------------------

def test_kill_switch_cancels_everything_and_blocks_until_resume(harness):
    h = harness(prices={"BTC/USDT": "100", "ETH/USDT": "10"})
    h.buy_position("3", "100")
    opened = [h.place("buy", "1", str(90 + i)) for i in range(4)]
    opened.append(h.place("sell", "1", "11", symbol="ETH/USDT", strategy="s2"))
    req = h.engine.kill_switch("runaway strategy", who="bob")
    assert set(req.cancel_order_ids) == {o.client_order_id for o in opened} and req.orders == ()
    assert h.engine.state is HALTED
    t = h.transitions[-1]
    assert (t.scope, t.new, t.who) == ("account:acc", HALTED, "bob") and "runaway" in t.reason
    rng = np.random.default_rng(0)
    for _ in range(50):  # nothing passes: any side, size, type, strategy, symbol
        sym, px = ("BTC/USDT", 100) if rng.integers(2) else ("ETH/USDT", 10)
        d = h.check(["buy", "sell"][rng.integers(2)], str(rng.integers(1, 4)),
                    None if rng.integers(2) else str(px), symbol=sym, strategy=f"s{rng.integers(3)}")
        assert d.reason == "account_halted"
    for o in opened:
        h.event(o, OrderStatus.CANCELED)
    assert h.engine.metrics()["open_orders"] == 0 and h.engine.state is HALTED
    h.engine.resume("account:acc", who="bob", reason="fixed")
    assert h.engine.state is ACTIVE
    assert h.check("sell", "1", None).approved


def test_kill_switch_flatten_splits_within_impact_limits(harness):
    limits = {"liquidation": {"max_child_notional": 250, "max_volume_fraction": 0.5, "interval_s": 10}}

    def run():
        h = harness(limits, cash="100000", prices={})
        h.price("BTC/USDT", "100", volume="20")
        h.price("ETH/USDT", "10")
        h.buy_position("10", "100", strategy="a")
        h.buy_position("2", "100", strategy="b", side="sell")
        h.buy_position("7", "10", symbol="ETH/USDT", strategy="a")
        return h, h.engine.kill_switch("drill", flatten=True)

    h, req = run()
    by_key: dict = {}
    for o in req.orders:
        by_key.setdefault((o.strategy, o.symbol, o.side), []).append(o)
        assert o.order_type is OrderType.MARKET and o.parent_id
    btc_a = by_key[("a", "BTC/USDT", Side.SELL)]
    # BTC cap: min(250 / 100, 0.5 * 20) = 2.5 per child; 10 -> 4 children of 2.5
    assert [o.quantity for o in btc_a] == [Decimal("2.5")] * 4
    assert [o.ts for o in btc_a] == [h.clock.t + i * 10 * 10**9 for i in range(4)]
    assert sum(o.quantity for o in by_key[("b", "BTC/USDT", Side.BUY)]) == Decimal(2)
    eth = by_key[("a", "ETH/USDT", Side.SELL)]  # cap 25 (no volume seen) -> one child of 7
    assert [o.quantity for o in eth] == [Decimal(7)]
    _, again = run()
    assert [o.client_order_id for o in again.orders] == [o.client_order_id for o in req.orders]  # deterministic
    assert len({o.client_order_id for o in req.orders}) == len(req.orders)
    for o in req.orders:
        assert h.engine.check(o).approved
    assert h.check("sell", "1", None).reason == "account_halted"


def test_evaluate_lifts_an_elapsed_cool_down_without_new_prices(harness):
    h = harness({"breakers": {"volatility_sigma": 5, "volatility_window": 30, "volatility_min_samples": 20,
                              "cooldown_s": 30, "stale_after_s": 1000}}, prices={})
    prime(h, "BTC/USDT", calm_prices(25))
    h.price("BTC/USDT", Decimal(120))
    assert h.engine.state_of("symbol:BTC/USDT") is HALTED
    h.clock.advance(30)
    h.engine.evaluate()
    assert h.engine.state_of("symbol:BTC/USDT") is ACTIVE
    assert [t.new for t in h.transitions] == [HALTED, ACTIVE]


def test_replayed_kill_switch_does_not_reapprove_sent_orders(harness):
    h = harness(cash="100000")
    h.buy_position("3", "100")
    first = h.engine.kill_switch("drill", flatten=True)
    for o in first.orders:
        assert h.engine.check(o).approved
    again = h.engine.kill_switch("drill", flatten=True)  # same clock, same reason: same ids
    assert [o.client_order_id for o in again.orders] == [o.client_order_id for o in first.orders]
    for o in again.orders:
        assert h.engine.check(o).reason == "account_halted"
    assert h.engine.metrics()["open_orders"] == len(first.orders)


def test_strategy_resume_rebases_its_drawdown(harness):
    h = harness({"drawdown": TIERS, "strategies": {"s1": {"capital": 1000}}}, cash="100000")
    h.buy_position("10", "100", strategy="s1")
    h.price("BTC/USDT", "89")  # s1 down 11%: D2
    assert h.engine.state_of("strategy:s1") is REDUCING and h.engine.size_multiplier("s1") == Decimal("0.5")
    h.engine.resume("strategy:s1", who="dan", reason="ok")
    assert h.engine.state_of("strategy:s1") is ACTIVE and h.engine.size_multiplier("s1") == Decimal(1)
    h.price("BTC/USDT", "88")  # 1.1% below the new peak
    assert h.engine.state_of("strategy:s1") is ACTIVE


def test_transition_records_are_deterministic(harness):
    from trading.risk import scope
    a, b = harness(), harness()
    for h in (a, b):
        h.engine.set_state(scope("strategy", "s1"), HALTED, "eve", "test")
    assert a.transitions == b.transitions and a.transitions[0].id == b.transitions[0].id
    assert a.transitions[0].scope == "strategy:s1"
    with pytest.raises(RiskInputError):
        scope("desk", "x")


def test_a_hold_of_another_part_of_the_platform_is_lifted_by_its_release_or_a_resume(harness):
    h = harness({})
    h.buy_position("1", "100")
    h.engine.hold("reconciliation", REDUCING, "USDT drift", who="reconciler")
    assert h.engine.state is REDUCING and h.engine.held("reconciliation") is REDUCING
    assert h.check("buy", "1", "100").reason == "account_reducing"
    assert h.check("sell", "1", "100").approved  # reducing orders still go
    h.engine.hold("reconciliation_halt", HALTED, "BTC drift", who="reconciler")
    h.engine.release("reconciliation", "done", who="reconciler")  # the halt stays
    assert h.engine.state is HALTED and h.engine.held("reconciliation") is None
    assert [(t.new, t.who) for t in h.transitions][-2:] == [(REDUCING, "reconciler"), (HALTED, "reconciler")]
    h.engine.resume("account:acc", "ops", "checked the venue")
    assert h.engine.state is ACTIVE and h.engine.held("reconciliation_halt") is None
    with pytest.raises(RiskInputError, match="operator"):
        h.engine.hold("kill_switch", HALTED, "x", who="reconciler")
    with pytest.raises(RiskInputError, match="release"):
        h.engine.hold("reconciliation", ACTIVE, "x", who="reconciler")
