"""Tick-to-bar aggregation: trade prints -> OHLCV bars of one interval, per symbol.

A bar covers [open_ts, open_ts + interval) aligned to the epoch; it is emitted by the first tick of a
later bar (a bar is only known once it has closed), stamped with that tick's receive time.  Bars in
which no trade printed are not emitted (no trade, no bar).  A tick older than the symbol's current bar
is the caller's to handle: ``open_ts`` (symbol -> open time of the bar being built) tells which bar is
open so it can drop or count late ticks.
"""

from __future__ import annotations

from trading.marketdata.timeframes import interval_ns
from trading.records import Bar, Tick


class BarAggregator:
    """Ticks -> OHLCV bars of ``interval`` for any number of symbols.  Hot path: one dict lookup per tick."""

    __slots__ = ("interval", "step", "open_ts", "_cur")

    def __init__(self, interval: str) -> None:
        self.interval, self.step = interval, interval_ns(interval)  # bad interval: IntervalError
        # symbol -> open time of the bar being built (a plain dict: the stream reads it for every tick)
        self.open_ts: dict[str, int] = {}
        self._cur: dict[str, list] = {}  # symbol -> [open_ts, o, h, l, c, v, exchange]

    def update(self, t: Tick) -> Bar | None:
        """Add one tick; returns the symbol's previous bar when this tick opens a new one.

        Ticks must arrive in time order per symbol (check ``open_ts`` first): a tick older than the
        open bar would otherwise start a bar in the past.
        """
        start = t.exchange_ts - t.exchange_ts % self.step
        cur = self._cur.get(t.symbol)
        if cur is not None and start == cur[0]:
            p = t.price
            if p > cur[2]:
                cur[2] = p
            if p < cur[3]:
                cur[3] = p
            cur[4] = p
            cur[5] += t.amount
            return None
        self._cur[t.symbol] = [start, t.price, t.price, t.price, t.price, t.amount, t.exchange]
        self.open_ts[t.symbol] = start
        if cur is None:
            return None
        return Bar(cur[6], t.symbol, self.interval, cur[0], t.receive_ts, cur[1], cur[2], cur[3], cur[4], cur[5])
