"""trading.performance: a strategy's daily record, checked against numbers worked out by hand."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from trading.performance import strategy_days
from trading.records import Fill, Liquidity, Side

D1, D2, D3 = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)
CASH = Decimal(100000)


def _fill(fid: str, strategy: str, symbol: str, side: Side, price: str, qty: str, fee: str, day: date) -> Fill:
    ts = int(datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
    return Fill(fid, fid, "acct", strategy, "sim", symbol, side, Decimal(price), Decimal(qty), Decimal(fee), "USDT",
                Liquidity.TAKER, ts)


FILLS = [
    _fill("a", "s1", "BTC/USDT", Side.BUY, "100", "1", "0.1", D1),
    _fill("b", "s1", "BTC/USDT", Side.SELL, "120", "1", "0.1", D2),
    _fill("c", "s2", "ETH/USDT", Side.BUY, "50", "2", "0", D2),
]
CLOSES = {D1: {"BTC/USDT": Decimal(110)}, D2: {"BTC/USDT": Decimal(120), "ETH/USDT": Decimal(45)},
          D3: {"BTC/USDT": Decimal(130), "ETH/USDT": Decimal(40)}}


def test_a_row_per_strategy_and_day_with_hand_checked_figures():
    rows = {(r.strategy, r.as_of): r for r in strategy_days("acct", FILLS, CLOSES, CASH, D3)}
    assert sorted(rows) == [("s1", D1), ("s1", D2), ("s1", D3), ("s2", D2), ("s2", D3)]

    # s1: bought 1 at 100 (fee 0.1), marked 110: +9.9; sold at 120 (fee 0.1): +19.8, one winning round trip
    assert rows["s1", D1].pnl == Decimal("9.9") and rows["s1", D1].trade_count == 0
    assert rows["s1", D1].win_rate is None and rows["s1", D1].sharpe is None  # one daily return only
    assert rows["s1", D3].pnl == Decimal("19.8") and rows["s1", D3].trade_count == 1 and rows["s1", D3].win_rate == 1
    assert rows["s1", D3].total_return == pytest.approx(19.8 / 100000)
    assert rows["s1", D3].max_drawdown == 0
    equity = [100009.9, 100019.8, 100019.8]
    r = [equity[0] / 100000 - 1, equity[1] / equity[0] - 1, equity[2] / equity[1] - 1]
    mean = sum(r) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in r) / 2)
    assert rows["s1", D3].sharpe == pytest.approx(mean / std * math.sqrt(365.25))

    # s2: 2 ETH bought at 50, marked 45 then 40; its round trip is still open
    assert rows["s2", D2].pnl == Decimal(-10) and rows["s2", D3].pnl == Decimal(-20)
    assert rows["s2", D3].trade_count == 0 and rows["s2", D3].win_rate is None
    assert rows["s2", D3].max_drawdown == pytest.approx(99980 / 100000 - 1)


def test_first_limits_the_rows_and_later_fills_are_ignored():
    late = _fill("d", "s3", "BTC/USDT", Side.BUY, "100", "1", "0", date(2026, 11, 9))
    rows = strategy_days("acct", [*FILLS, late], CLOSES, CASH, D3, first=D3)
    assert [(r.strategy, r.as_of) for r in rows] == [("s1", D3), ("s2", D3)]
    assert strategy_days("acct", [], CLOSES, CASH, D3) == []
