"""The sim market's 1-minute bars as trade prints for the stream's Trader.

Each bar becomes four prints inside its minute -- open, then the extreme the path touched first, the
other extreme, the close -- so the Trader's own BarAggregator rebuilds exactly the bar the historical
store holds (same OHLC, same volume), and an order decided at a bar's close fills at the next print (the
next bar's open), as in the stream.  The sim venue's own tick path has dozens of prints a minute; four
keep a month of three symbols to about half a million Trader calls.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Iterator

import polars as pl

from trading.records import Tick

NS = 1_000_000_000
OFFSETS_NS = (0, 15 * NS, 30 * NS, 59 * NS)  # the four prints' places inside the minute


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))  # round-trips the float exactly


def bar_prints(bars: pl.DataFrame) -> Iterator[Tick]:
    """Prints of ``bars`` (columns exchange, symbol, ts, open, high, low, close, volume) in time order,
    symbols interleaved print by print as a feed would deliver them."""
    ordered = bars.sort(["ts", "symbol"])
    rows = ordered.select("exchange", "symbol", "ts", "open", "high", "low", "close", "volume").rows()
    i, n = 0, len(rows)
    while i < n:
        ts = rows[i][2]
        j = i
        while j < n and rows[j][2] == ts:
            j += 1
        minute = []
        for exchange, symbol, t, o, h, lo, c, v in rows[i:j]:
            # a rising bar went down first (open, low, high, close), a falling one up first
            path = (o, lo, h, c) if c >= o else (o, h, lo, c)
            vol = _dec(v)
            part = (vol / 4).quantize(Decimal("1e-12"))
            amounts = (part, part, part, vol - 3 * part)
            minute.append([Tick(exchange, symbol, t + off, t + off, _dec(p), a)
                           for off, p, a in zip(OFFSETS_NS, path, amounts)])
        for k in range(4):
            for prints in minute:
                yield prints[k]
        i = j
