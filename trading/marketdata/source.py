"""When a market record can be known (the ordering every source, replay and backtest follows).

The source interface itself is ``trading.ports.MarketDataSource``.
"""

from __future__ import annotations

from trading.marketdata.timeframes import interval_ns
from trading.records import Bar, MarketRecord


def available_ts(record: MarketRecord) -> int:
    """When a record can be known: a bar only when it closes (open + interval), anything else at exchange_ts.

    Ordering by this (not by a bar's open time) is what keeps replays and backtests free of look-ahead.
    """
    if isinstance(record, Bar):
        return record.exchange_ts + interval_ns(record.interval)
    return record.exchange_ts
