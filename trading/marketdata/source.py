"""The one interface every market-data source shares: sim, ccxt REST/WebSocket, replay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from trading.marketdata.timeframes import interval_ns
from trading.records import Bar, BookSnapshot, Quote, Tick

MarketRecord = Tick | Quote | Bar | BookSnapshot


@runtime_checkable
class MarketDataSource(Protocol):
    """A source of normalised market records.

    ``stream()`` yields records in availability order (see ``available_ts``); ``fetch_bars`` is the
    batch path for research and backtests.
    """

    def stream(self) -> AsyncIterator[MarketRecord]: ...

    def fetch_bars(self, symbol: str, interval: str, start_ns: int, end_ns: int) -> list[Bar]: ...


def available_ts(record: MarketRecord) -> int:
    """When a record can be known: a bar only when it closes (open + interval), anything else at exchange_ts.

    Ordering by this (not by a bar's open time) is what keeps replays and backtests free of look-ahead.
    """
    if isinstance(record, Bar):
        return record.exchange_ts + interval_ns(record.interval)
    return record.exchange_ts
