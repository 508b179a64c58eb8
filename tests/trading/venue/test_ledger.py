"""The one ledger (trading.ledger): the fee rule shared by the portfolio and the risk book, and bounded
memory in a process that books fills for months."""

from __future__ import annotations

import gc
import tracemalloc
from decimal import Decimal as D

import pytest

from trading.clock import BarClock
from trading.ledger import InvalidFillError, Portfolio
from trading.records import Fill, Liquidity, Side
from trading.risk import RiskEngine, RiskInputError, RiskLimits

SYM = "BTC/USDT"


def fill(fid: str, side: str, qty: str, price: str, fee: str = "0", ccy: str = "USDT", strategy: str = "s") -> Fill:
    return Fill(fid, "c-" + fid, "a", strategy, "sim", SYM, Side(side), D(price), D(qty), D(fee), ccy, Liquidity.TAKER, 1)


FILLS = [fill("1", "buy", "2", "100", "0.002", "BTC"),  # Binance: the fee comes out of the BTC bought
         fill("2", "buy", "1", "110", "0.11"),
         fill("3", "sell", "2.5", "120", "0.0025", "BTC"),
         fill("4", "sell", "1", "90", "0.09"),  # through zero: short 0.5045
         fill("5", "buy", "0.2", "95", "0.0002", "BTC", strategy="t")]


def test_a_base_asset_fee_leaves_the_position_at_the_fill_price_and_the_identity_holds():
    p = Portfolio("a", D(1000))
    p.apply_fill(FILLS[0])
    pos = p.position(SYM)
    assert pos.quantity == D("1.998")  # what the venue holds for us: 2 bought, 0.002 paid as fee
    assert pos.fees == D("0.2")  # 0.002 BTC at 100
    assert p.cash == D(800)  # the fee is paid in BTC, not in cash
    assert p.equity() - p.initial_cash == D("-0.2") == p.realized_pnl + p.unrealized_pnl() - p.fees_paid
    for f in FILLS[1:]:
        p.apply_fill(f)
        assert p.equity() - p.initial_cash == p.realized_pnl + p.unrealized_pnl() - p.fees_paid


def test_a_fee_in_a_third_currency_is_refused_and_changes_nothing():
    p = Portfolio("a", D(1000))
    before = p.snapshot()
    with pytest.raises(InvalidFillError, match="fee currency 'BNB' is neither the quote nor the base"):
        p.apply_fill(fill("x", "buy", "1", "100", "0.01", "BNB"))
    assert p.snapshot() == before
    risk = RiskEngine(RiskLimits(), "a", D(1000), BarClock())
    with pytest.raises(RiskInputError, match="BNB"):
        risk.on_fill(fill("x", "buy", "1", "100", "0.01", "BNB"))
    assert risk.positions() == [] and risk.metrics()["cash"] == 1000.0
    risk.on_fill(fill("x", "buy", "1", "100", "0.01", "USDT"))  # not remembered as seen: the good fill books
    assert risk.positions()[0].quantity == D(1)


def test_the_risk_book_and_the_portfolio_agree_fill_by_fill():
    p = Portfolio("a", D(1000))
    risk = RiskEngine(RiskLimits(), "a", D(1000), BarClock())
    for f in FILLS:
        p.apply_fill(f)
        risk.on_fill(f)
        by_risk = {(x.strategy, x.symbol): x for x in risk.positions()}
        for strat in ("s", "t"):
            mine = p.position(SYM, strat)
            theirs = by_risk.get((strat, SYM))
            if mine.quantity == 0:
                assert theirs is None
                continue
            assert (theirs.quantity, theirs.avg_price, theirs.realized_pnl, theirs.fees) == \
                   (mine.quantity, mine.avg_price, mine.realized_pnl, mine.fees)
    m = risk.metrics()  # the risk book's account figures are sums over its (strategy, symbol) legs
    realized = sum(p.strategy_pnl(s)["realized"] for s in ("s", "t"))
    assert m["cash"] == float(p.cash) and m["fees"] == float(p.fees_paid) and m["realized_pnl"] == float(realized)


def _apply(p: Portfolio, start: int, n: int) -> None:
    price, qty, fee, buy, sell, taker = D("100.5"), D("0.01"), D("0.001"), Side.BUY, Side.SELL, Liquidity.TAKER
    for i in range(start, start + n):
        p.apply_fill(Fill(f"f{i}", "c", "a", "s", "sim", SYM, buy if i & 1 else sell, price, qty, fee, "USDT", taker, i))


def test_a_million_fills_keep_memory_bounded_and_recent_duplicates_are_still_ignored():
    window = 10_000
    p = Portfolio("a", D(10**9), dedup_window=window)
    _apply(p, 0, 900_000)
    assert len(p._fill_ids) == window and len(p._holdings) == 1 and len(p._by_strategy) == 1
    gc.collect()
    tracemalloc.start()
    try:
        _apply(p, 900_000, 50_000)
        gc.collect()
        first = tracemalloc.get_traced_memory()[0]
        _apply(p, 950_000, 50_000)
        gc.collect()
        second = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert second - first < 64 * 1024, (first, second)  # flat: the last 50k fills added nothing
    assert len(p._fill_ids) == window and len(p.snapshot()["fill_ids"]) == window
    equity, cash = p.equity(), p.cash
    last = Fill("f999999", "c", "a", "s", "sim", SYM, Side.BUY, D("100.5"), D("0.01"), D("0.001"), "USDT", Liquidity.TAKER, 0)
    p.apply_fill(last)  # within the window: ignored
    old = Fill(f"f{1_000_000 - window - 1}", "c", "a", "s", "sim", SYM, Side.BUY, D("1"), D("1"), D("0"), "USDT", Liquidity.TAKER, 0)
    assert p.duplicate_fills == 1 and (p.equity(), p.cash) == (equity, cash)
    q = Portfolio("a", D(0), dedup_window=window)
    q.restore(p.snapshot())
    q.apply_fill(last)
    assert q.duplicate_fills == 1 and q.cash == cash  # the window survives snapshot/restore
    q.apply_fill(old)  # older than the window: the system of record's unique fill ids are the guard there
    assert q.cash == cash - 1
