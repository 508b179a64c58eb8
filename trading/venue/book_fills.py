"""BookFillVenue: the paper venue filling against an L2 book and trade prints.

Book mode (``fill_mode="book"``): the market's L2 levels from ``on_book`` are held in an ``OrderBook``
next to our orders, so our orders queue behind the market volume already at their price:
  * marketable orders walk the depth at each level's price (taker); a market order's remainder beyond
    the visible depth is canceled "no_liquidity".  Liquidity taken stays taken until the next snapshot.
  * a new snapshot re-syncs each level: volume that left is removed from the back of the queue (so
    cancels are assumed to come from behind us), new volume joins behind us.  New levels that cross our
    resting orders fill them at our price (maker).
  * a trade print (``on_tick``) at price p consumes the market's queue at p and then our orders there
    (maker, at our price); our orders priced through p (a buy above a sell print) fill fully, since the
    market cannot trade through a resting order.  Prints with an unknown aggressor hit the side of the
    book they touch.  Prints also move the last price that triggers stops.
  * sizes are floored to whole lots; prices must be on the instrument's tick.
"""

from __future__ import annotations

from decimal import Decimal

from trading.records import (
    AggressorSide, BookSnapshot, Fill, Instrument, Liquidity, OrderEvent, OrderRequest, OrderStatus, Side, Tick,
    TimeInForce,
)
from trading.venue import book as bk
from trading.venue.paper import (
    _OPEN, CANCEL_FOK, CANCEL_IOC, CANCEL_NO_LIQUIDITY, CANCEL_SELF_TRADE, REJECT_POST_ONLY_CROSS,
    REPLACE_REJECTED_POST_ONLY, REPLACED, InvalidMarketDataError, PaperVenue, _bad_number, _Working,
)

_DROP_REASON = {bk.CANCELED: CANCEL_NO_LIQUIDITY, bk.REJECTED_FOK: CANCEL_FOK, bk.SELF_TRADE: CANCEL_SELF_TRADE}
_US = "paper"  # owner tag of our orders in the book: they never trade with each other


class _BookState:
    __slots__ = ("book", "tick", "lot", "levels")

    def __init__(self, inst: Instrument):
        self.book = bk.OrderBook()
        self.tick = inst.tick_size
        self.lot = inst.lot_size
        self.levels: dict[tuple[bool, int], list[int]] = {}  # market volume ids per (is_buy, price)


class BookFillVenue(PaperVenue):
    """Fills orders against the market's L2 book (``on_book``) and trade prints (``on_tick``)."""

    fill_mode = "book"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[str, list[_Working]] = {}  # orders still travelling to the venue
        self._books: dict[str, _BookState] = {}
        self._next_synth = 0  # market-volume ids in the books are negative, ours positive

    def on_book(self, snapshot: BookSnapshot) -> list[OrderEvent | Fill]:
        """Book mode: take a new L2 snapshot of the market (see the module docstring)."""
        st = self._book_state(snapshot.symbol)
        bids = self._levels_to_ints(snapshot, st, snapshot.bids, "bids")
        asks = self._levels_to_ints(snapshot, st, snapshot.asks, "asks")
        if bids and asks and max(bids) >= min(asks):
            raise InvalidMarketDataError(f"book {snapshot.symbol} at {snapshot.exchange_ts} is crossed: best bid >= best ask")
        out: list = []
        self._release_pending(snapshot.symbol, snapshot.exchange_ts, out)
        book = st.book
        target = {(True, p): q for p, q in bids.items()}
        target.update({(False, p): q for p, q in asks.items()})
        grow: dict[tuple[bool, int], int] = {}
        # Shrink first, so the market's own levels never cross each other while re-syncing.
        for key, ids in list(st.levels.items()):
            ids[:] = [i for i in ids if i in book]
            have = sum(book.remaining(i) for i in ids)
            want = target.get(key, 0)
            while have > want:  # volume left: take it from the back of the queue
                i = ids[-1]
                q = book.remaining(i)
                if q <= have - want:
                    book.cancel(i)
                    ids.pop()
                    have -= q
                else:
                    book.amend(i, q - (have - want))
                    have = want
            grow[key] = want - have
            if not ids:
                del st.levels[key]
        for key, want in target.items():
            grow.setdefault(key, want)  # a level we hold no market volume for yet
        ts = snapshot.exchange_ts
        for (is_buy, price), qty in grow.items():
            if qty <= 0:
                continue
            sid = self._synthetic_id()
            code, trades, canceled = book.add(sid, is_buy, qty, price)
            if code is bk.RESTED:
                st.levels.setdefault((is_buy, price), []).append(sid)
            self._apply_trades(st, trades, canceled, ts, out)
        return out

    def on_tick(self, tick: Tick) -> list[OrderEvent | Fill]:
        """Book mode: a trade printed by the market (see the module docstring)."""
        st = self._book_state(tick.symbol)
        if _bad_number(tick.price) or tick.price % st.tick != 0:
            raise InvalidMarketDataError(f"tick {tick.symbol} price {tick.price!r} must be > 0 and on tick size {st.tick}")
        if not isinstance(tick.amount, Decimal) or not tick.amount.is_finite() or tick.amount < 0:
            raise InvalidMarketDataError(f"tick {tick.symbol} amount {tick.amount!r} must be a finite Decimal >= 0")
        out: list = []
        ts = tick.exchange_ts
        self._release_pending(tick.symbol, ts, out)
        book = st.book
        p = int(tick.price / st.tick)
        lots = int(tick.amount / st.lot)
        side = tick.side
        if side is AggressorSide.UNKNOWN:
            bb, ba = book.best_bid(), book.best_ask()
            side = (AggressorSide.SELL if bb is not None and bb >= p
                    else AggressorSide.BUY if ba is not None and ba <= p else None)
        if side is not None:
            hits_bids = side is AggressorSide.SELL
            # The market traded at p, so its own volume priced through p is gone.
            for key in [k for k in st.levels if k[0] == hits_bids and (k[1] > p if hits_bids else k[1] < p)]:
                for i in st.levels.pop(key):
                    if i in book:
                        book.cancel(i)
            side_hit = Side.BUY if hits_bids else Side.SELL
            through = sum(
                book.remaining(w.book_id)
                for w in self._open.get(tick.symbol, {}).values()
                if w.req.side is side_hit and w.arrived and book.is_resting(w.book_id)
                and (w.req.price > tick.price if hits_bids else w.req.price < tick.price)
            )
            if through + lots > 0:
                code, trades, canceled = book.add(self._synthetic_id(), not hits_bids, through + lots, p, bk.IOC)
                self._apply_trades(st, trades, canceled, ts, out)
        trades, canceled = book.set_last_price(p)
        self._apply_trades(st, trades, canceled, ts, out)
        return out

    def _in_flight(self, w: _Working) -> None:
        self._pending.setdefault(w.req.symbol, []).append(w)

    def _withdraw(self, w: _Working) -> None:
        if w.arrived:
            self._books[w.req.symbol].book.cancel(w.book_id)
        else:
            self._pending[w.req.symbol].remove(w)

    def _replace(self, w: _Working, new_req: OrderRequest, remaining: Decimal, keeps_priority: bool,
                 ts: int) -> list[OrderEvent | Fill]:
        req, price = w.req, new_req.price
        out: list = []
        st = self._books[req.symbol]
        if not w.arrived:
            self._set_request(w, new_req, remaining, keeps_priority)
            return [self._event(w, w.status, ts, REPLACED)]
        price_ticks = None if price is None else int(price / st.tick)
        code, trades, canceled = st.book.amend(w.book_id, int(remaining / st.lot), price_ticks)
        if code is bk.REJECTED_POST_ONLY:
            return [self._event(w, w.status, ts, REPLACE_REJECTED_POST_ONLY)]
        self._set_request(w, new_req, remaining, keeps_priority)
        out.append(self._event(w, w.status, ts, REPLACED))
        self._apply_trades(st, trades, canceled, ts, out)
        if code is bk.SELF_TRADE or code is bk.CANCELED:
            out.append(self._close(w, OrderStatus.CANCELED, ts, _DROP_REASON[code]))
        return out

    def _book_state(self, symbol: str) -> _BookState:
        st = self._books.get(symbol)
        if st is None:
            inst = self._instrument(symbol)
            if inst is None:
                raise InvalidMarketDataError(f"market data for unknown symbol {symbol!r}")
            st = self._books[symbol] = _BookState(inst)
        return st

    def _synthetic_id(self) -> int:
        self._next_synth -= 1
        return self._next_synth

    @staticmethod
    def _levels_to_ints(s: BookSnapshot, st: _BookState, levels, name: str) -> dict[int, int]:
        out: dict[int, int] = {}
        for lvl in levels:
            if _bad_number(lvl.price) or lvl.price % st.tick != 0:
                raise InvalidMarketDataError(f"book {s.symbol} {name} price {lvl.price!r} must be > 0 and on tick size {st.tick}")
            if not isinstance(lvl.size, Decimal) or not lvl.size.is_finite() or lvl.size < 0:
                raise InvalidMarketDataError(f"book {s.symbol} {name} size {lvl.size!r} must be a finite Decimal >= 0")
            lots = int(lvl.size / st.lot)  # floored: a fraction of a lot cannot fill us
            if lots:
                out[int(lvl.price / st.tick)] = out.get(int(lvl.price / st.tick), 0) + lots
        return out

    def _arrive_book(self, w: _Working, out: list) -> None:
        r = w.req
        st = self._book_state(r.symbol)
        ts = w.arrival_ts
        self._seq += 1
        w.book_id = self._seq
        self._by_book_id[w.book_id] = w
        tif = {TimeInForce.GTC: bk.GTC, TimeInForce.IOC: bk.IOC, TimeInForce.FOK: bk.FOK}[r.time_in_force]
        price = None if r.price is None else int(r.price / st.tick)
        stop = None if r.stop_price is None else int(r.stop_price / st.tick)
        code, trades, canceled = st.book.add(w.book_id, r.side is Side.BUY, int(w.remaining / st.lot), price, tif,
                                             r.post_only, stop, _US)
        if code is bk.REJECTED_POST_ONLY:
            out.append(self._close(w, OrderStatus.REJECTED, ts, REJECT_POST_ONLY_CROSS))
            return
        w.arrived = True
        w.status = OrderStatus.ACKNOWLEDGED
        out.append(self._event(w, w.status, ts))
        self._apply_trades(st, trades, canceled, ts, out)
        if code in _DROP_REASON and w.status in _OPEN:
            out.append(self._close(w, OrderStatus.CANCELED, ts, self._drop_reason(w, code)))

    _arrive = _arrive_book

    @staticmethod
    def _drop_reason(w: _Working, code: str) -> str:
        if code is bk.CANCELED and w.req.time_in_force is TimeInForce.IOC:
            return CANCEL_IOC
        return _DROP_REASON[code]

    def _apply_trades(self, st: _BookState, trades: list, canceled, ts: int, out: list) -> None:
        """Turn book trades involving our orders into fills (market-vs-market trades only consume volume)."""
        for maker, taker, price, lots in trades:
            if maker > 0:
                self._fill(self._by_book_id[maker], price * st.tick, lots * st.lot, Liquidity.MAKER, ts, out)
            if taker > 0:
                self._fill(self._by_book_id[taker], price * st.tick, lots * st.lot, Liquidity.TAKER, ts, out)
        for i, code in canceled:
            if i > 0:
                w = self._by_book_id[i]
                out.append(self._close(w, OrderStatus.CANCELED, ts, self._drop_reason(w, code)))

    def _release_pending(self, symbol: str, ts: int, out: list) -> None:
        pending = self._pending.get(symbol)
        if not pending:
            return
        ready = sorted((w for w in pending if w.arrival_ts <= ts), key=lambda w: (w.arrival_ts, w.seq))
        for w in ready:
            pending.remove(w)
            self._arrive_book(w, out)
