"""PaperVenue: a simulated exchange that fills orders against bars or against an L2 book and trade prints.

The venue returns ``OrderEvent`` and ``Fill`` records in the order they happened; it keeps no money.  The
caller applies each ``Fill`` to its ``trading.ledger.Portfolio`` (that is how fills become positions).

Common rules (both modes)
  * Invalid orders come back as one ``OrderEvent`` with status REJECTED and a reason code (see REJECT_*).
    A client order id is never reused: a second order with a known id is rejected "duplicate_client_order_id".
  * Fill ids are ``stable_id("fill", client_order_id, n)`` with n = 1, 2, ... the fill's number within its order.
  * Latency: an order reaches the venue ``order_to_venue`` ns after ``order.ts`` (its NEW event comes first
    and the ACK on arrival); fills are reported ``venue_to_fill`` ns after they happen.  With zero latency
    (the default) submit returns the ACK (and, in book mode, any immediate fills) directly.  Cancels and
    replaces act at once.
  * Events for a fill come as the ``Fill`` followed by the order's PARTIALLY_FILLED / FILLED event.
  * Our own orders never trade with each other (book mode): an order that reaches one of our resting
    orders stops there and its remainder is canceled "self_trade_prevented" (the resting order stays).

Bar mode (``fill_mode="bar"``) -- conventions, for bar b delivered after the order reached the venue
(with zero latency: any bar delivered after submit; with latency: bars whose open ts >= arrival ts):
  * market: at b.open, moved against the order by ``ImpactModel`` (volatility = b's (high-low)/open); taker.
  * limit buy L (sell mirrors): if b.open <= L it fills at b.open (the bar opens through the limit); else if
    b.low < L (or == L when ``touch_fills``) it fills at L.  Taker on the first bar after arrival (the
    order arrived marketable), maker on later bars.  No impact: the limit caps the price.
  * IOC / FOK limits only get the first bar's open; otherwise they are canceled.
  * post-only: rejected at arrival when it would cross the last close seen.
  * stop buy S: triggers when b.high >= S, at b.open if b opens at/above S else at S; a stop then fills at
    the trigger price plus impact (taker); a stop-limit fills at the trigger price when that is within its
    limit, else it rests as a limit from the next bar (the path inside a bar is unknown).
  * ``max_participation`` (optional) caps fills at that fraction of each bar's volume (shared by all
    orders of the symbol, in time priority); what is left waits for the next bar (IOC: canceled, FOK:
    canceled unless all fits).  Without it bars fill orders completely.

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

import dataclasses
from decimal import Decimal

from trading.records import (
    AggressorSide,
    Bar,
    BookSnapshot,
    Fill,
    Instrument,
    Liquidity,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Tick,
    TimeInForce,
    stable_id,
)
from trading.venue import book as bk
from trading.venue.costs import FeeSchedule, ImpactModel, LatencyModel

# Reject / cancel reason codes.
REJECT_DUPLICATE = "duplicate_client_order_id"
REJECT_WRONG_EXCHANGE = "wrong_exchange"
REJECT_UNKNOWN_SYMBOL = "unknown_symbol"
REJECT_QUANTITY = "invalid_quantity"
REJECT_LOT = "quantity_not_on_lot_size"
REJECT_MISSING_PRICE = "missing_price"
REJECT_PRICE = "invalid_price"
REJECT_TICK = "price_not_on_tick_size"
REJECT_UNEXPECTED_PRICE = "unexpected_price"
REJECT_MISSING_STOP = "missing_stop_price"
REJECT_STOP = "invalid_stop_price"
REJECT_STOP_TICK = "stop_price_not_on_tick_size"
REJECT_UNEXPECTED_STOP = "unexpected_stop_price"
REJECT_POST_ONLY_TYPE = "post_only_requires_gtc_limit"
REJECT_MIN_NOTIONAL = "below_min_notional"
REJECT_POST_ONLY_CROSS = "post_only_would_cross"
CANCEL_SELF_TRADE = "self_trade_prevented"
CANCEL_CLIENT = "canceled_by_client"
CANCEL_IOC = "ioc_remainder_canceled"
CANCEL_FOK = "fok_not_fillable"
CANCEL_NO_LIQUIDITY = "no_liquidity"
REPLACED = "replaced"
REPLACE_REJECTED_POST_ONLY = "replace_rejected_post_only_would_cross"

_DROP_REASON = {bk.CANCELED: CANCEL_NO_LIQUIDITY, bk.REJECTED_FOK: CANCEL_FOK, bk.SELF_TRADE: CANCEL_SELF_TRADE}
_US = "paper"  # owner tag of our orders in the book: they never trade with each other
_ZERO = Decimal(0)
_OPEN = (OrderStatus.NEW, OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED)


class VenueError(ValueError):
    """Bad input to the paper venue."""


class VenueConfigError(VenueError):
    pass


class UnknownOrderError(VenueError):
    pass


class OrderClosedError(VenueError):
    pass


class InvalidReplaceError(VenueError):
    pass


class InvalidMarketDataError(VenueError):
    pass


@dataclasses.dataclass(slots=True, eq=False)
class _Working:
    """The venue's state of one accepted order."""

    req: OrderRequest
    seq: int
    arrival_ts: int
    remaining: Decimal
    filled: Decimal = _ZERO
    n_fills: int = 0
    status: OrderStatus = OrderStatus.NEW
    arrived: bool = False
    bars_seen: int = 0  # bar mode: bars this order has been live for (0 = it arrives at this bar's open)
    triggered: bool = False  # stop orders, bar mode
    book_id: int = 0  # book mode: id in the OrderBook


class _BookState:
    __slots__ = ("book", "tick", "lot", "levels")

    def __init__(self, inst: Instrument):
        self.book = bk.OrderBook()
        self.tick = inst.tick_size
        self.lot = inst.lot_size
        self.levels: dict[tuple[bool, int], list[int]] = {}  # market volume ids per (is_buy, price)


def _bad_number(x: object) -> bool:
    """Not a finite Decimal > 0 (records carry Decimals; a float or NaN here is a caller's bug)."""
    return not isinstance(x, Decimal) or not x.is_finite() or x <= 0


class PaperVenue:
    """Simulated venue; see the module docstring for the fill conventions."""

    def __init__(
        self,
        exchange: str = "sim",
        instruments: dict[str, Instrument] | None = None,
        fees: FeeSchedule | None = None,
        impact: ImpactModel | None = None,
        latency: LatencyModel | None = None,
        fill_mode: str = "bar",
        bar_fill: str = "next_open",
        *,
        touch_fills: bool = False,
        max_participation: float | None = None,
    ) -> None:
        if fill_mode not in ("bar", "book"):
            raise VenueConfigError(f"fill_mode must be 'bar' or 'book', got {fill_mode!r}")
        if bar_fill != "next_open":
            raise VenueConfigError(f"bar_fill must be 'next_open', got {bar_fill!r}")
        if max_participation is not None and not (0 < max_participation <= 1):
            raise VenueConfigError(f"max_participation must be in (0, 1], got {max_participation!r}")
        self.exchange = exchange
        self.fill_mode = fill_mode
        self.bar_fill = bar_fill
        self.fees = fees or FeeSchedule()
        self.impact = impact or ImpactModel()
        self.latency = latency or LatencyModel()
        self.touch_fills = touch_fills
        self.max_participation = None if max_participation is None else Decimal(str(max_participation))
        self._instruments = dict(instruments) if instruments is not None else None
        self._default_instruments: dict[str, Instrument] = {}
        self._orders: dict[str, _Working] = {}
        self._seen: set[str] = set()
        self._open: dict[str, dict[str, _Working]] = {}  # symbol -> id -> order, in time priority
        self._pending: dict[str, list[_Working]] = {}  # book mode: orders still travelling to the venue
        self._books: dict[str, _BookState] = {}
        self._by_book_id: dict[int, _Working] = {}
        self._next_synth = 0  # market-volume ids in the books are negative, ours positive
        self._last_close: dict[str, Decimal] = {}
        self._seq = 0
        self.ignored_data = 0  # market data of the other fill mode, counted rather than silently dropped

    # ================================================================== orders

    def submit(self, order: OrderRequest) -> list[OrderEvent | Fill]:
        """Validate and accept an order; returns its NEW/ACK or REJECTED event and any immediate fills."""
        reason = self._validate(order)
        if reason is not None:
            self._seen.add(order.client_order_id)
            rem = order.quantity if isinstance(order.quantity, Decimal) else _ZERO
            return [OrderEvent(order.client_order_id, order.account, order.strategy, order.symbol,
                               OrderStatus.REJECTED, _ZERO, rem, order.ts, reason)]
        self._seen.add(order.client_order_id)
        delay = self.latency.order_to_venue()
        self._seq += 1
        w = _Working(order, self._seq, order.ts + delay, order.quantity)
        self._orders[order.client_order_id] = w
        self._open.setdefault(order.symbol, {})[order.client_order_id] = w
        if delay:
            if self.fill_mode == "book":
                self._pending.setdefault(order.symbol, []).append(w)
            return [self._event(w, OrderStatus.NEW, order.ts)]
        out: list = []
        if self.fill_mode == "bar":
            self._arrive_bar(w, out)
        else:
            self._arrive_book(w, out)
        return out

    def cancel(self, client_order_id: str, ts: int) -> list[OrderEvent]:
        """Cancel an open order.  Canceling an order that is already closed returns no event."""
        w = self._get(client_order_id)
        if w.status not in _OPEN:
            return []
        if self.fill_mode == "book":
            if w.arrived:
                self._books[w.req.symbol].book.cancel(w.book_id)
            else:
                self._pending[w.req.symbol].remove(w)
        return [self._close(w, OrderStatus.CANCELED, ts, CANCEL_CLIENT)]

    def replace(self, client_order_id: str, new_quantity: Decimal | None, new_price: Decimal | None,
                ts: int) -> list[OrderEvent | Fill]:
        """Change an open order's total quantity and/or limit price.

        Decreasing the quantity keeps queue priority; a price change or an increase goes to the back of
        the queue (and, in book mode, may trade at once, like a new order).  A post-only replace that
        would cross is refused: the order stays as it was and its current status comes back with reason
        "replace_rejected_post_only_would_cross".  Invalid values raise InvalidReplaceError."""
        w = self._get(client_order_id)
        if w.status not in _OPEN:
            raise OrderClosedError(f"order {client_order_id!r} is {w.status.value}; it cannot be replaced")
        req = w.req
        inst = self._instrument(req.symbol)
        qty = req.quantity if new_quantity is None else new_quantity
        price = req.price if new_price is None else new_price
        if _bad_number(qty) or qty % inst.lot_size != 0:
            raise InvalidReplaceError(f"new_quantity {new_quantity!r} must be > 0 and a multiple of lot size {inst.lot_size}")
        if qty <= w.filled:
            raise InvalidReplaceError(f"new_quantity {qty} must exceed the quantity already filled {w.filled}")
        if new_price is not None:
            if req.order_type in (OrderType.MARKET, OrderType.STOP):
                raise InvalidReplaceError(f"new_price given for a {req.order_type.value} order, which has no limit price")
            if _bad_number(price) or price % inst.tick_size != 0:
                raise InvalidReplaceError(f"new_price {new_price!r} must be > 0 and a multiple of tick size {inst.tick_size}")
        new_req = dataclasses.replace(req, quantity=qty, price=price)
        remaining = qty - w.filled
        keeps_priority = price == req.price and remaining <= w.remaining
        out: list = []
        if self.fill_mode == "bar":
            if req.post_only and self._bar_would_cross(new_req):
                return [self._event(w, w.status, ts, REPLACE_REJECTED_POST_ONLY)]
            self._set_request(w, new_req, remaining, keeps_priority)
            if not keeps_priority:
                w.bars_seen = 0
            out.append(self._event(w, w.status, ts, REPLACED))
            return out
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

    def open_orders(self, symbol: str | None = None) -> list[OrderRequest]:
        """Open orders (as last replaced) in time priority, for one symbol or all."""
        books = [self._open.get(symbol, {})] if symbol is not None else self._open.values()
        return [w.req for orders in books for w in orders.values()]

    def order_status(self, client_order_id: str) -> OrderStatus:
        return self._get(client_order_id).status

    # ================================================================== market data

    def on_bar(self, bar: Bar) -> list[OrderEvent | Fill]:
        """Bar mode: fill the symbol's working orders against this bar (see the module docstring)."""
        _check_bar(bar)
        if self.fill_mode != "bar":
            self.ignored_data += 1
            return []
        out: list = []
        used = [_ZERO]  # volume taken from this bar by our orders (for max_participation)
        for w in list(self._open.get(bar.symbol, {}).values()):
            if w.status not in _OPEN:
                continue
            if not w.arrived:
                if bar.exchange_ts < w.arrival_ts:
                    continue
                if not self._arrive_bar(w, out):
                    continue
            self._fill_on_bar(w, bar, used, out)
            w.bars_seen += 1
        self._last_close[bar.symbol] = bar.close
        return out

    def on_book(self, snapshot: BookSnapshot) -> list[OrderEvent | Fill]:
        """Book mode: take a new L2 snapshot of the market (see the module docstring)."""
        if self.fill_mode != "book":
            self.ignored_data += 1
            return []
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
        if self.fill_mode != "book":
            self.ignored_data += 1
            return []
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

    # ================================================================== internals: validation

    def _instrument(self, symbol: str) -> Instrument | None:
        if self._instruments is not None:
            return self._instruments.get(symbol)
        inst = self._default_instruments.get(symbol)
        if inst is None:
            inst = self._default_instruments[symbol] = Instrument(self.exchange, symbol)
        return inst

    def _validate(self, o: OrderRequest) -> str | None:
        if o.client_order_id in self._seen:
            return REJECT_DUPLICATE
        if o.exchange != self.exchange:
            return REJECT_WRONG_EXCHANGE
        inst = self._instrument(o.symbol)
        if inst is None:
            return REJECT_UNKNOWN_SYMBOL
        if _bad_number(o.quantity):
            return REJECT_QUANTITY
        if o.quantity % inst.lot_size != 0:
            return REJECT_LOT
        has_limit = o.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        if has_limit:
            if o.price is None:
                return REJECT_MISSING_PRICE
            if _bad_number(o.price):
                return REJECT_PRICE
            if o.price % inst.tick_size != 0:
                return REJECT_TICK
        elif o.price is not None:
            return REJECT_UNEXPECTED_PRICE
        if o.order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
            if o.stop_price is None:
                return REJECT_MISSING_STOP
            if _bad_number(o.stop_price):
                return REJECT_STOP
            if o.stop_price % inst.tick_size != 0:
                return REJECT_STOP_TICK
        elif o.stop_price is not None:
            return REJECT_UNEXPECTED_STOP
        if o.post_only and (o.order_type is not OrderType.LIMIT or o.time_in_force is not TimeInForce.GTC):
            return REJECT_POST_ONLY_TYPE
        ref = o.price if o.price is not None else o.stop_price
        if ref is not None and o.quantity * ref < inst.min_notional:
            return REJECT_MIN_NOTIONAL
        return None

    def _get(self, client_order_id: str) -> _Working:
        w = self._orders.get(client_order_id)
        if w is None:
            raise UnknownOrderError(f"client_order_id {client_order_id!r} is not an order of this venue")
        return w

    # ================================================================== internals: events and fills

    @staticmethod
    def _event(w: _Working, status: OrderStatus, ts: int, reason: str | None = None) -> OrderEvent:
        r = w.req
        return OrderEvent(r.client_order_id, r.account, r.strategy, r.symbol, status, w.filled, w.remaining, ts, reason)

    def _close(self, w: _Working, status: OrderStatus, ts: int, reason: str | None) -> OrderEvent:
        w.status = status
        self._open[w.req.symbol].pop(w.req.client_order_id, None)
        if w.book_id:
            self._by_book_id.pop(w.book_id, None)
        return self._event(w, status, ts, reason)

    def _fill(self, w: _Working, price: Decimal, qty: Decimal, liquidity: Liquidity, ts: int, out: list) -> None:
        r = w.req
        inst = self._instrument(r.symbol)
        ts += self.latency.venue_to_fill()
        w.n_fills += 1
        w.filled += qty
        w.remaining -= qty
        out.append(Fill(stable_id("fill", r.client_order_id, w.n_fills), r.client_order_id, r.account, r.strategy,
                        self.exchange, r.symbol, r.side, price, qty, self.fees.fee(price * qty, liquidity),
                        inst.quote, liquidity, ts))
        if w.remaining == 0:
            out.append(self._close(w, OrderStatus.FILLED, ts, None))
        else:
            w.status = OrderStatus.PARTIALLY_FILLED
            out.append(self._event(w, w.status, ts))

    def _set_request(self, w: _Working, req: OrderRequest, remaining: Decimal, keeps_priority: bool) -> None:
        w.req = req
        w.remaining = remaining
        if not keeps_priority:  # to the back of the queue
            orders = self._open[req.symbol]
            orders[req.client_order_id] = orders.pop(req.client_order_id)

    # ================================================================== internals: bar mode

    def _bar_would_cross(self, r: OrderRequest) -> bool:
        last = self._last_close.get(r.symbol)
        return last is not None and (r.price >= last if r.side is Side.BUY else r.price <= last)

    def _arrive_bar(self, w: _Working, out: list) -> bool:
        """The order reaches the venue; False if it is rejected there."""
        if w.req.post_only and self._bar_would_cross(w.req):
            out.append(self._close(w, OrderStatus.REJECTED, w.arrival_ts, REJECT_POST_ONLY_CROSS))
            return False
        w.arrived = True
        w.status = OrderStatus.ACKNOWLEDGED
        out.append(self._event(w, w.status, w.arrival_ts))
        return True

    def _fill_on_bar(self, w: _Working, b: Bar, used: list, out: list) -> None:
        r = w.req
        buy = r.side is Side.BUY
        ts = b.exchange_ts
        ot = r.order_type
        if ot in (OrderType.STOP, OrderType.STOP_LIMIT) and not w.triggered:
            s = r.stop_price
            if not (b.high >= s if buy else b.low <= s):
                return
            w.triggered = True
            trig = b.open if (b.open >= s if buy else b.open <= s) else s
            if ot is OrderType.STOP:
                self._take(w, b, trig, Liquidity.TAKER, True, used, out)
            elif (trig <= r.price) if buy else (trig >= r.price):
                self._take(w, b, trig, Liquidity.TAKER, False, used, out)
            elif r.time_in_force is not TimeInForce.GTC:
                out.append(self._close(w, OrderStatus.CANCELED, ts, CANCEL_IOC if r.time_in_force is TimeInForce.IOC else CANCEL_FOK))
            else:
                w.bars_seen = 0  # rests as a limit from the next bar (incremented by the caller)
            return
        if ot in (OrderType.MARKET, OrderType.STOP):
            self._take(w, b, b.open, Liquidity.TAKER, True, used, out)
            return
        limit = r.price
        first = w.bars_seen == 0 and not w.triggered
        if (b.open <= limit) if buy else (b.open >= limit):
            self._take(w, b, b.open, Liquidity.TAKER if first else Liquidity.MAKER, False, used, out)
        elif r.time_in_force is not TimeInForce.GTC:
            out.append(self._close(w, OrderStatus.CANCELED, ts, CANCEL_IOC if r.time_in_force is TimeInForce.IOC else CANCEL_FOK))
        elif (b.low < limit or (self.touch_fills and b.low == limit)) if buy else (
                b.high > limit or (self.touch_fills and b.high == limit)):
            self._take(w, b, limit, Liquidity.MAKER, False, used, out)

    def _take(self, w: _Working, b: Bar, price: Decimal, liq: Liquidity, impact: bool, used: list, out: list) -> None:
        """Fill as much as the bar allows at ``price`` (moved by impact if asked); apply IOC/FOK to the rest."""
        r = w.req
        qty = w.remaining
        if self.max_participation is not None:
            lot = self._instrument(r.symbol).lot_size
            room = self.max_participation * b.volume - used[0]
            qty = min(qty, max(_ZERO, (room / lot).to_integral_value(rounding="ROUND_FLOOR") * lot))
        tif = r.time_in_force
        if tif is TimeInForce.FOK and qty < w.remaining:
            out.append(self._close(w, OrderStatus.CANCELED, b.exchange_ts, CANCEL_FOK))
            return
        if qty > 0:
            if impact:
                vol = float((b.high - b.low) / b.open) if b.open > 0 else 0.0
                price = self.impact.fill_price(price, r.side is Side.BUY, qty, b.volume, vol)
            used[0] += qty
            self._fill(w, price, qty, liq, b.exchange_ts, out)
        if w.remaining > 0 and tif is TimeInForce.IOC:
            out.append(self._close(w, OrderStatus.CANCELED, b.exchange_ts, CANCEL_IOC))

    # ================================================================== internals: book mode

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


def _check_bar(b: Bar) -> None:
    for name, v in (("open", b.open), ("high", b.high), ("low", b.low), ("close", b.close)):  # no getattr: hot path
        if _bad_number(v):
            raise InvalidMarketDataError(f"bar {b.symbol} at {b.exchange_ts}: {name} {v!r} must be a finite Decimal > 0")
    if not isinstance(b.volume, Decimal) or not b.volume.is_finite() or b.volume < 0:
        raise InvalidMarketDataError(f"bar {b.symbol} at {b.exchange_ts}: volume {b.volume!r} must be a finite Decimal >= 0")
    if b.low > min(b.open, b.close) or b.high < max(b.open, b.close):
        raise InvalidMarketDataError(f"bar {b.symbol} at {b.exchange_ts}: low {b.low} / high {b.high} do not contain open/close")

