"""ccxt *unified* structures -> records, validating each one.

A ``Normalizer`` never raises for bad data: it returns the accepted records, counts the rejected ones
by (kind, reason) and logs each rejected record once on the "tradeloop.marketdata" logger.
Numbers become ``Decimal(str(x))`` so that what the venue printed is what we store.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from decimal import Decimal, InvalidOperation

from trading.marketdata.timeframes import interval_ns
from trading.records import NS_PER_MS, NS_PER_S, AggressorSide, Bar, BookLevel, BookSnapshot, Quote, Tick

log = logging.getLogger("tradeloop.marketdata")

# Reason codes (the second half of a Normalizer.rejected key).
MALFORMED = "malformed"  # missing keys, wrong types, unparsable numbers
NOT_FINITE = "not_finite"  # NaN or infinity
NON_POSITIVE_PRICE = "non_positive_price"
NON_POSITIVE_SIZE = "non_positive_size"  # a trade of zero or negative amount
NEGATIVE_SIZE = "negative_size"  # negative volume or level/quote size
OHLC_INCONSISTENT = "ohlc_inconsistent"  # low > min(open, close) or high < max(open, close)
CROSSED_BOOK = "crossed_book"  # best bid >= best ask
TS_IN_FUTURE = "ts_in_future"
TS_BEFORE_EPOCH = "ts_before_epoch"
OUT_OF_ORDER = "out_of_order"  # older than the last accepted record of the same stream
DUPLICATE = "duplicate"  # same record id already accepted on this stream

SANE_EPOCH_NS = 1_230_940_800 * NS_PER_S  # 2009-01-03, the first bitcoin block: nothing real is older

_SIDES = {"buy": AggressorSide.BUY, "sell": AggressorSide.SELL, None: AggressorSide.UNKNOWN}


class _Reject(Exception):
    """Internal: a record failed validation (control flow only, never escapes the Normalizer)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail


def _dec(value: object, name: str) -> Decimal:
    """Exact Decimal of a ccxt number (float via its shortest repr, str as written)."""
    t = type(value)
    if t is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise _Reject(NOT_FINITE, f"{name}={value!r}")
        return Decimal(repr(value))
    if t is int:
        return Decimal(value)  # type: ignore[arg-type]
    if t is str or t is Decimal:
        try:
            d = Decimal(value)  # type: ignore[arg-type]
        except InvalidOperation:
            raise _Reject(MALFORMED, f"{name}={value!r} is not a number") from None
        if not d.is_finite():
            raise _Reject(NOT_FINITE, f"{name}={value!r}")
        return d
    raise _Reject(MALFORMED, f"{name}={value!r} has type {t.__name__}, want a number")


def _price(value: object, name: str) -> Decimal:
    d = _dec(value, name)
    if d <= 0:
        raise _Reject(NON_POSITIVE_PRICE, f"{name}={value!r}")
    return d


def _size(value: object, name: str) -> Decimal:
    d = _dec(value, name)
    if d < 0:
        raise _Reject(NEGATIVE_SIZE, f"{name}={value!r}")
    return d


def _ms_to_ns(value: object, name: str = "timestamp") -> int:
    t = type(value)
    if t is int:
        return value * NS_PER_MS  # type: ignore[operator]
    if t is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise _Reject(NOT_FINITE, f"{name}={value!r}")
        return round(value * NS_PER_MS)  # type: ignore[operator]
    if value is None:
        raise _Reject(MALFORMED, f"{name} is missing")
    raise _Reject(MALFORMED, f"{name}={value!r} has type {t.__name__}, want int milliseconds")


class Normalizer:
    """Validates and converts ccxt unified payloads of one exchange into records.

    Streams are keyed by (kind, symbol[, interval]); per stream it remembers the last accepted
    timestamp (for out-of-order checks) and the ids of the last ``dedupe_window`` accepted records.
    """

    def __init__(
        self,
        exchange: str,
        *,
        now_ns: Callable[[], int] = time.time_ns,
        max_future_ns: int = 5 * NS_PER_S,
        min_ts_ns: int = SANE_EPOCH_NS,
        dedupe_window: int = 100_000,
        receive_ts_if_missing: bool = False,
    ) -> None:
        """``max_future_ns``: how far ahead of ``now_ns()`` a venue timestamp may be (clock skew).
        ``receive_ts_if_missing``: stamp tickers/books without a venue timestamp (binance REST books)
        with our receive time instead of rejecting them."""
        if not exchange:
            raise ValueError("Normalizer exchange name must be a non-empty string")
        self.exchange = exchange
        self._now = now_ns
        self.max_future_ns = max_future_ns
        self.min_ts_ns = min_ts_ns
        self.dedupe_window = dedupe_window
        self.receive_ts_if_missing = receive_ts_if_missing
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[tuple[str, str]] = Counter()
        self._last_ts: dict[Hashable, int] = {}
        self._seen: dict[Hashable, dict[str, None]] = {}

    # ------------------------------------------------------------------ shared checks

    def _reject(self, kind: str, err: _Reject, raw: object) -> None:
        self.rejected[(kind, err.reason)] += 1
        # overlapping pages and reconnects make duplicates routine: keep them out of the warnings
        log.log(logging.DEBUG if err.reason == DUPLICATE else logging.WARNING,"rejected %s %s: %s: %r", self.exchange, kind, err.reason + " " + err.detail, raw)

    def _check_ts(self, ts: int, now: int) -> None:
        if ts > now + self.max_future_ns:
            raise _Reject(TS_IN_FUTURE, f"ts={ts} is more than {self.max_future_ns} ns after now={now}")
        if ts < self.min_ts_ns:
            raise _Reject(TS_BEFORE_EPOCH, f"ts={ts} is before {self.min_ts_ns}")

    def _admit(self, stream: Hashable, rec_id: Hashable, ts: int) -> None:
        """Duplicate / order checks against the stream; records the id and ts when accepted.

        ``rec_id`` is whatever identifies the record within its stream (the venue's trade id, a bar's
        open time): equivalent to the record's ``id`` there and much cheaper than hashing it."""
        seen = self._seen.get(stream)
        if seen is None:
            seen = self._seen[stream] = {}
        if rec_id in seen:
            raise _Reject(DUPLICATE, f"id {rec_id} already accepted")
        last = self._last_ts.get(stream)
        if last is not None and ts < last:
            raise _Reject(OUT_OF_ORDER, f"ts={ts} < last accepted {last}")
        self._last_ts[stream] = ts
        seen[rec_id] = None
        if len(seen) > self.dedupe_window:
            del seen[next(iter(seen))]  # dicts keep insertion order: drop the oldest id

    # ------------------------------------------------------------------ trades

    def trades(self, raw: Iterable[object], symbol: str | None = None) -> list[Tick]:
        """ccxt trade dicts (fetch_trades / watch_trades) -> Ticks. ``symbol`` fills a missing 'symbol'."""
        now = self._now()
        out: list[Tick] = []
        for t in raw:
            try:
                if not isinstance(t, dict):
                    raise _Reject(MALFORMED, f"trade is a {type(t).__name__}, want a dict")
                sym = t.get("symbol") or symbol
                if not isinstance(sym, str):
                    raise _Reject(MALFORMED, f"symbol={sym!r}")
                ts = _ms_to_ns(t.get("timestamp"))
                price = _price(t.get("price"), "price")
                amount = _dec(t.get("amount"), "amount")
                if amount <= 0:
                    raise _Reject(NON_POSITIVE_SIZE, f"amount={t.get('amount')!r}")
                raw_side = t.get("side")
                side = _SIDES.get(raw_side) if raw_side is None or type(raw_side) is str else None
                if side is None:
                    raise _Reject(MALFORMED, f"side={t.get('side')!r}, want 'buy', 'sell' or None")
                tid = t.get("id")
                if tid is not None and not isinstance(tid, (str, int)):
                    raise _Reject(MALFORMED, f"id={tid!r}")
                self._check_ts(ts, now)
                tick = Tick(self.exchange, sym, ts, now, price, amount, side, None if tid is None else str(tid))
                self._admit(("tick", sym), tick.trade_id if tick.trade_id is not None else tick.id, ts)
            except _Reject as err:
                self._reject("tick", err, t)
                continue
            out.append(tick)
        self.accepted["tick"] += len(out)
        return out

    # ------------------------------------------------------------------ OHLCV

    def ohlcv(self, symbol: str, interval: str, raw: Iterable[object]) -> list[Bar]:
        """ccxt OHLCV rows ``[ms, open, high, low, close, volume]`` -> Bars."""
        interval_ns(interval)  # a bad interval is a caller bug: raise, do not count
        now = self._now()
        out: list[Bar] = []
        stream = ("bar", symbol, interval)
        for row in raw:
            try:
                if not isinstance(row, (list, tuple)) or len(row) < 6:
                    raise _Reject(MALFORMED, "want [timestamp, open, high, low, close, volume]")
                ts = _ms_to_ns(row[0])
                o, h, lo, c = (_price(row[i], n) for i, n in ((1, "open"), (2, "high"), (3, "low"), (4, "close")))
                v = _size(row[5], "volume")
                if lo > min(o, c) or h < max(o, c) or lo > h:
                    raise _Reject(OHLC_INCONSISTENT, f"open={o} high={h} low={lo} close={c}")
                self._check_ts(ts, now)
                bar = Bar(self.exchange, symbol, interval, ts, now, o, h, lo, c, v)
                self._admit(stream, ts, ts)
            except _Reject as err:
                self._reject("bar", err, row)
                continue
            out.append(bar)
        self.accepted["bar"] += len(out)
        return out

    # ------------------------------------------------------------------ ticker / order book

    def _venue_ts(self, raw: dict, now: int) -> int:
        if raw.get("timestamp") is None and self.receive_ts_if_missing:
            return now
        return _ms_to_ns(raw.get("timestamp"))

    def ticker(self, raw: object, symbol: str | None = None) -> Quote | None:
        """A ccxt ticker (fetch_ticker / watch_ticker) -> Quote of its best bid/ask, or None if rejected."""
        now = self._now()
        try:
            if not isinstance(raw, dict):
                raise _Reject(MALFORMED, f"ticker is a {type(raw).__name__}, want a dict")
            sym = raw.get("symbol") or symbol
            if not isinstance(sym, str):
                raise _Reject(MALFORMED, f"symbol={sym!r}")
            ts = self._venue_ts(raw, now)
            bid, ask = _price(raw.get("bid"), "bid"), _price(raw.get("ask"), "ask")
            bid_size, ask_size = _size(raw.get("bidVolume"), "bidVolume"), _size(raw.get("askVolume"), "askVolume")
            if bid >= ask:
                raise _Reject(CROSSED_BOOK, f"bid={bid} >= ask={ask}")
            self._check_ts(ts, now)
            quote = Quote(self.exchange, sym, ts, now, bid, bid_size, ask, ask_size)
            self._admit(("quote", sym), ts, ts)
        except _Reject as err:
            self._reject("quote", err, raw)
            return None
        self.accepted["quote"] += 1
        return quote

    def order_book(self, raw: object, symbol: str | None = None) -> BookSnapshot | None:
        """A ccxt order book (fetch_order_book / watch_order_book) -> BookSnapshot, or None if rejected."""
        now = self._now()
        try:
            if not isinstance(raw, dict):
                raise _Reject(MALFORMED, f"order book is a {type(raw).__name__}, want a dict")
            sym = raw.get("symbol") or symbol
            if not isinstance(sym, str):
                raise _Reject(MALFORMED, f"symbol={sym!r}")
            ts = self._venue_ts(raw, now)
            bids, asks = self._levels(raw.get("bids"), "bids", True), self._levels(raw.get("asks"), "asks", False)
            if bids and asks and bids[0].price >= asks[0].price:
                raise _Reject(CROSSED_BOOK, f"best bid {bids[0].price} >= best ask {asks[0].price}")
            nonce = raw.get("nonce")
            if nonce is not None and type(nonce) is not int:
                raise _Reject(MALFORMED, f"nonce={nonce!r}, want int")
            self._check_ts(ts, now)
            book = BookSnapshot(self.exchange, sym, ts, now, bids, asks, nonce)
            self._admit(("book", sym), (ts, nonce), ts)
        except _Reject as err:
            self._reject("book", err, raw)
            return None
        self.accepted["book"] += 1
        return book

    @staticmethod
    def _levels(raw: object, name: str, descending: bool) -> tuple[BookLevel, ...]:
        if not isinstance(raw, (list, tuple)):
            raise _Reject(MALFORMED, f"{name}={raw!r}, want a list of [price, amount]")
        levels = []
        for i, lvl in enumerate(raw):
            if not isinstance(lvl, (list, tuple)) or len(lvl) < 2:
                raise _Reject(MALFORMED, f"{name}[{i}]={lvl!r}, want [price, amount]")
            levels.append(BookLevel(_price(lvl[0], f"{name}[{i}].price"), _size(lvl[1], f"{name}[{i}].amount")))
        for a, b in zip(levels, levels[1:]):
            if (a.price <= b.price) if descending else (a.price >= b.price):
                raise _Reject(MALFORMED, f"{name} not strictly sorted best first at price {b.price}")
        return tuple(levels)
