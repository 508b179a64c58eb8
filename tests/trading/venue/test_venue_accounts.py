"""Portfolio: P&L against hand computation, attribution, idempotency, persistence, conservation property."""

from __future__ import annotations

import json
from decimal import Decimal as D
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.ledger import InvalidFillError, Portfolio, PortfolioError, WrongAccountError
from trading.records import Fill, Liquidity, Side

_n = [0]


def fill(side: str, qty: str, price: str, fee: str = "0", symbol: str = "BTC/USDT", strategy: str = "s1",
         fill_id: str | None = None, account: str = "acc") -> Fill:
    _n[0] += 1
    return Fill(fill_id or f"f{_n[0]}", "c", account, strategy, "sim", symbol, Side(side), D(price), D(qty), D(fee),
                symbol.split("/")[1], Liquidity.TAKER, _n[0])


def test_long_average_cost_realized_unrealized_fees():
    p = Portfolio("acc", D("10000"))
    p.apply_fill(fill("buy", "2", "100", "0.2"))
    p.apply_fill(fill("buy", "1", "103", "0.1"))
    assert p.position("BTC/USDT").avg_price == D("101")
    p.apply_fill(fill("sell", "2", "105", "0.21"))
    p.mark("BTC/USDT", D("104"))
    pos = p.position("BTC/USDT")
    assert (pos.quantity, pos.avg_price, pos.realized_pnl) == (D("1"), D("101"), D("8"))
    assert p.unrealized_pnl() == D("3") and p.fees_paid == D("0.51")
    assert p.cash == D("10000") - D("200.2") - D("103.1") + D("209.79")
    assert p.equity() == D("10010.49") == D("10000") + 8 + 3 - D("0.51")


def test_short_then_cover_part():
    p = Portfolio("acc", D("1000"))
    p.apply_fill(fill("sell", "3", "50"))
    assert p.cash == D("1150")
    p.apply_fill(fill("buy", "1", "45"))
    p.mark("BTC/USDT", D("47"))
    pos = p.position("BTC/USDT")
    assert (pos.quantity, pos.avg_price, pos.realized_pnl) == (D("-2"), D("50"), D("5"))
    assert p.unrealized_pnl("BTC/USDT") == D("6")
    assert p.equity() == D("1000") + 5 + 6


def test_flip_through_zero_both_ways():
    p = Portfolio("acc", D("0"))
    p.apply_fill(fill("buy", "2", "100"))
    p.apply_fill(fill("sell", "5", "110"))  # closes 2 (+20), opens 3 short at 110
    pos = p.position("BTC/USDT")
    assert (pos.quantity, pos.avg_price, pos.realized_pnl) == (D("-3"), D("110"), D("20"))
    p.apply_fill(fill("buy", "4", "100"))  # covers 3 (+30), opens 1 long at 100
    pos = p.position("BTC/USDT")
    assert (pos.quantity, pos.avg_price, pos.realized_pnl) == (D("1"), D("100"), D("50"))
    p.apply_fill(fill("sell", "1", "90"))  # closes flat (-10)
    assert p.realized_pnl == D("40") and p.position("BTC/USDT").quantity == 0
    assert p.equity() == p.cash == D("40")


def test_unmarked_positions_use_the_last_fill_price():
    p = Portfolio("acc", D("100"))
    p.apply_fill(fill("buy", "1", "10"))
    p.apply_fill(fill("buy", "1", "12"))
    assert p.unrealized_pnl() == D("2") and p.equity() == D("102")


def test_strategy_attribution_adds_up_to_the_account():
    p = Portfolio("acc", D("0"))
    p.apply_fill(fill("buy", "1", "100", "0.1", strategy="a"))
    p.apply_fill(fill("sell", "1", "110", "0.2", strategy="b"))
    p.mark("BTC/USDT", D("105"))
    a, b = p.strategy_pnl("a"), p.strategy_pnl("b")
    assert a == {"realized": D("0"), "unrealized": D("5"), "fees": D("0.1"), "net": D("4.9")}
    assert b == {"realized": D("0"), "unrealized": D("5"), "fees": D("0.2"), "net": D("4.8")}
    assert p.realized_pnl == D("10") and p.position("BTC/USDT").quantity == 0  # the account is flat
    assert a["net"] + b["net"] == p.equity()
    assert p.position("BTC/USDT", "a").quantity == D("1") and p.strategies() == ["a", "b"]
    assert p.strategy_pnl("nobody")["net"] == 0


def test_duplicate_fill_is_ignored_and_counted():
    p = Portfolio("acc", D("1000"))
    f = fill("buy", "1", "100", "1")
    p.apply_fill(f)
    p.apply_fill(f)
    assert p.cash == D("899") and p.duplicate_fills == 1


def test_bad_fills_are_refused_with_named_problems():
    p = Portfolio("acc", D("1000"))
    with pytest.raises(WrongAccountError, match="other"):
        p.apply_fill(fill("buy", "1", "100", account="other"))
    with pytest.raises(InvalidFillError, match="quantity"):
        p.apply_fill(fill("buy", "0", "100"))
    with pytest.raises(InvalidFillError, match="price"):
        p.apply_fill(fill("buy", "1", "NaN"))
    f = fill("buy", "1", "100", "1")
    with pytest.raises(InvalidFillError, match="fee currency"):
        p.apply_fill(Fill(*[getattr(f, s) for s in f.__slots__][:10], "BNB", f.liquidity, f.ts))
    with pytest.raises(InvalidFillError, match="portfolio currency"):
        Portfolio("acc", D("1"), currency="USD").apply_fill(fill("buy", "1", "1"))
    with pytest.raises(PortfolioError, match="mark"):
        p.mark("BTC/USDT", D("-1"))
    assert p.cash == D("1000")


def test_snapshot_restore_round_trip_through_json():
    p = Portfolio("acc", D("500"))
    p.apply_fill(fill("buy", "1.5", "100.25", "0.03", strategy="x"))
    p.apply_fill(fill("sell", "2", "30", symbol="ETH/USDT", strategy="y"))
    p.mark("BTC/USDT", D("101"))
    state = json.loads(json.dumps(p.snapshot()))
    q = Portfolio("acc", D("0"))
    q.restore(state)
    assert q.snapshot() == p.snapshot()
    assert (q.equity(), q.positions(), q.strategy_pnl("x")) == (p.equity(), p.positions(), p.strategy_pnl("x"))
    q.apply_fill(fill("buy", "1", "1", fill_id="f-dup"))
    p.apply_fill(fill("buy", "1", "1", fill_id="f-dup"))
    assert q.equity() == p.equity()
    with pytest.raises(WrongAccountError):
        Portfolio("other", D("0")).restore(state)


prices = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2)
qtys = st.decimals(min_value=D("0.0001"), max_value=D("50"), places=4)
fees = st.decimals(min_value=D("-1"), max_value=D("10"), places=6)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("fill"), st.sampled_from(["buy", "sell"]), qtys, prices, fees,
                  st.sampled_from(["BTC/USDT", "ETH/USDT"]), st.sampled_from(["a", "b", "c"])),
        st.tuples(st.just("mark"), st.sampled_from(["BTC/USDT", "ETH/USDT"]), prices),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(cash=st.decimals(min_value=D("0"), max_value=D("1000000"), places=2), steps=steps)
def test_equity_changes_only_by_pnl_minus_fees(cash, steps):
    p = Portfolio("acc", cash)
    flows = D(0)
    qty = {"BTC/USDT": D(0), "ETH/USDT": D(0)}
    avg = {"BTC/USDT": Fraction(0), "ETH/USDT": Fraction(0)}  # exact reference, average cost per unit
    realized = Fraction(0)
    for step in steps:
        if step[0] == "fill":
            _, side, q, px, fee, sym, strat = step
            p.apply_fill(fill(side, str(q), str(px), str(fee), symbol=sym, strategy=strat))
            d = q if side == "buy" else -q
            flows += d * px + fee
            old = qty[sym]
            if old == 0 or (old > 0) == (d > 0):
                avg[sym] = (Fraction(abs(old)) * avg[sym] + Fraction(abs(d)) * Fraction(px)) / Fraction(abs(old + d))
            else:
                closing = min(abs(d), abs(old))
                realized += Fraction(closing) * (Fraction(px) - avg[sym]) * (1 if old > 0 else -1)
                if abs(d) > abs(old):
                    avg[sym] = Fraction(px)
            qty[sym] += d
            assert abs(Fraction(p.realized_pnl) - realized) < Fraction(1, 10**20)
        else:
            p.mark(step[1], step[2])
        assert p.cash == cash - flows
        assert p.equity() - cash == p.realized_pnl + p.unrealized_pnl() - p.fees_paid
        assert sum(p.strategy_pnl(s)["net"] for s in "abc") == p.equity() - cash
        for sym, q in qty.items():
            assert p.position(sym).quantity == q
