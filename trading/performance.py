"""The daily performance record of each strategy of an account (table strategy_performance).

A row for day D holds the strategy's figures from its first fill to the end of D, with the definitions the
warehouse's mart_strategy_performance and the tear sheets use, computed by the code that owns them:
  * equity of a strategy's sleeve = starting equity + its net P&L (realised + unrealised - fees) from the
    one ledger (trading.ledger.Portfolio), marked at each day's close;
  * sharpe, max_drawdown, total_return: trading.backtest.metrics.EquityStats on that daily equity (returns
    against the previous day, the first against the starting equity; 24/7 annualisation).  Sharpe is None
    until there are two daily returns;
  * trade_count and win_rate: closed round trips (trading.backtest.trades.round_trips) and the share of them
    with a positive P&L net of fees; win_rate is None before the first closed round trip;
  * pnl: cumulative net P&L.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Iterable, Mapping

import numpy as np

from trading.backtest.metrics import EquityStats
from trading.backtest.trades import round_trips
from trading.ledger import Portfolio
from trading.records import Fill

DAY_NS = 86_400 * 1_000_000_000


@dataclass(frozen=True)
class StrategyDay:
    account: str
    strategy: str
    as_of: date
    trade_count: int
    win_rate: float | None
    sharpe: float | None
    max_drawdown: float
    total_return: float
    pnl: Decimal


def day_end_ns(day: date) -> int:
    """First instant after ``day`` (UTC), in ns."""
    return int(datetime.combine(day + timedelta(days=1), time(), timezone.utc).timestamp()) * 1_000_000_000


def day_of(ns: int) -> date:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).date()


def strategy_days(account: str, fills: Iterable[Fill], closes: Mapping[date, Mapping[str, Decimal]],
                  starting_equity: Decimal, last: date, first: date | None = None) -> list[StrategyDay]:
    """One row per strategy and day in [first, last] (``first`` None: the first fill's day), for every
    strategy of ``account`` with a fill by the end of that day.  ``fills``: the account's fills in time order
    (any after ``last`` are ignored); ``closes``: each day's closing price per symbol (a day or symbol without
    one keeps the previous mark, as the ledger does)."""
    fills = [f for f in fills if f.ts < day_end_ns(last)]
    if not fills:
        return []
    trips = round_trips(fills)
    book = Portfolio(account, starting_equity)
    equity: dict[str, list[float]] = {}  # strategy -> daily sleeve equity from its first day
    out: list[StrategyDay] = []
    day, i = day_of(fills[0].ts), 0
    first = first or day
    while day <= last:
        end = day_end_ns(day)
        while i < len(fills) and fills[i].ts < end:
            book.apply_fill(fills[i])
            i += 1
        for symbol, price in closes.get(day, {}).items():
            book.mark(symbol, Decimal(price))
        for strategy in book.strategies():
            net = book.strategy_pnl(strategy)["net"]
            curve = equity.setdefault(strategy, [])
            curve.append(float(starting_equity + net))
            if day < first:
                continue
            stats = EquityStats(float(starting_equity), DAY_NS)
            stats.update(np.arange(len(curve), dtype=np.int64) * DAY_NS, np.asarray(curve), np.ones(len(curve), bool))
            m = stats.metrics()
            closed = [t for t in trips if t.strategy == strategy and t.exit_time is not None and t.exit_time < end]
            out.append(StrategyDay(
                account, strategy, day, len(closed),
                sum(t.pnl > 0 for t in closed) / len(closed) if closed else None,
                m["sharpe"] if len(curve) >= 2 else None, m["max_drawdown"], m["total_return"], net))
        day += timedelta(days=1)
    return out
