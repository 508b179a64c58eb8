"""PaperVenue: a simulated exchange that fills orders against bars or against an L2 book and trade prints.

This module holds what both fill models share (orders, validation, events, fills, the rules below); each
fill model is a subclass: ``trading.venue.bar_fills.BarFillVenue`` (``fill_mode="bar"``) and
``trading.venue.book_fills.BookFillVenue`` (``fill_mode="book"``), with its conventions in its module.

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
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from trading.records import (
    Bar,
    BookSnapshot,
    Fill,
    Instrument,
    Liquidity,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    OrderType,
    Tick,
    TimeInForce,
    stable_id,
)
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


def _bad_number(x: object) -> bool:
    """Not a finite Decimal > 0 (records carry Decimals; a float or NaN here is a caller's bug)."""
    return not isinstance(x, Decimal) or not x.is_finite() or x <= 0


class PaperVenue:
    """Simulated venue: orders, validation, events and fills common to both fill models.

    ``PaperVenue(fill_mode="bar")`` is a BarFillVenue, ``fill_mode="book"`` a BookFillVenue."""

    fill_mode: str = ""  # the fill model's name: "bar" (BarFillVenue) or "book" (BookFillVenue)
    _FILL_MODELS: dict[str, type[PaperVenue]] = {}

    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        PaperVenue._FILL_MODELS[cls.fill_mode] = cls

    def __new__(cls, exchange: str = "sim", instruments: dict[str, Instrument] | None = None,
                fees: FeeSchedule | None = None, impact: ImpactModel | None = None,
                latency: LatencyModel | None = None, fill_mode: str = "bar", *args, **kwargs) -> PaperVenue:
        """``PaperVenue(..., fill_mode=...)`` builds the venue of that fill model: each model is a
        subclass (trading.venue.bar_fills, trading.venue.book_fills), so no method asks which mode it is in."""
        if cls is PaperVenue:
            cls = PaperVenue._FILL_MODELS.get(fill_mode, PaperVenue)  # unknown: __init__ says so
        return object.__new__(cls)


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
        if type(self) is PaperVenue:  # __new__ found no fill model of that name
            raise VenueConfigError(f"fill_mode must be 'bar' or 'book', got {fill_mode!r}")
        if bar_fill != "next_open":
            raise VenueConfigError(f"bar_fill must be 'next_open', got {bar_fill!r}")
        if max_participation is not None and not (0 < max_participation <= 1):
            raise VenueConfigError(f"max_participation must be in (0, 1], got {max_participation!r}")
        self.exchange = exchange
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
        self._by_book_id: dict[int, _Working] = {}  # book mode: our orders by their id in an OrderBook
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
            self._in_flight(w)
            return [self._event(w, OrderStatus.NEW, order.ts)]
        out: list = []
        self._arrive(w, out)
        return out

    def cancel(self, client_order_id: str, ts: int) -> list[OrderEvent]:
        """Cancel an open order.  Canceling an order that is already closed returns no event."""
        w = self._get(client_order_id)
        if w.status not in _OPEN:
            return []
        self._withdraw(w)
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
        return self._replace(w, new_req, remaining, keeps_priority, ts)

    def open_orders(self, symbol: str | None = None) -> list[OrderRequest]:
        """Open orders (as last replaced) in time priority, for one symbol or all."""
        books = [self._open.get(symbol, {})] if symbol is not None else self._open.values()
        return [w.req for orders in books for w in orders.values()]

    def order_status(self, client_order_id: str) -> OrderStatus:
        return self._get(client_order_id).status

    # ================================================================== market data

    def on_bar(self, bar: Bar) -> list[OrderEvent | Fill]:
        """Bars fill orders in bar mode; other fill models count them in ``ignored_data``."""
        _check_bar(bar)
        self.ignored_data += 1
        return []

    def on_book(self, snapshot: BookSnapshot) -> list[OrderEvent | Fill]:
        """L2 snapshots drive book mode; other fill models count them in ``ignored_data``."""
        self.ignored_data += 1
        return []

    def on_tick(self, tick: Tick) -> list[OrderEvent | Fill]:
        """Trade prints drive book mode; other fill models count them in ``ignored_data``."""
        self.ignored_data += 1
        return []

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

    # ================================================================== the fill model's part

    def _arrive(self, w: _Working, out: list) -> object:
        """The order reaches the venue (at submit, or when its latency has passed)."""
        raise NotImplementedError

    def _in_flight(self, w: _Working) -> None:
        """The order was accepted and is travelling to the venue (latency > 0)."""

    def _withdraw(self, w: _Working) -> None:
        """An open order is being canceled: take it out of the fill model's state."""

    def _replace(self, w: _Working, new_req: OrderRequest, remaining: Decimal, keeps_priority: bool,
                 ts: int) -> list[OrderEvent | Fill]:
        """Apply a validated replace (see ``replace``)."""
        raise NotImplementedError


def _check_bar(b: Bar) -> None:
    for name, v in (("open", b.open), ("high", b.high), ("low", b.low), ("close", b.close)):  # no getattr: hot path
        if _bad_number(v):
            raise InvalidMarketDataError(f"bar {b.symbol} at {b.exchange_ts}: {name} {v!r} must be a finite Decimal > 0")
    if not isinstance(b.volume, Decimal) or not b.volume.is_finite() or b.volume < 0:
        raise InvalidMarketDataError(f"bar {b.symbol} at {b.exchange_ts}: volume {b.volume!r} must be a finite Decimal >= 0")
    if b.low > min(b.open, b.close) or b.high < max(b.open, b.close):
        raise InvalidMarketDataError(f"bar {b.symbol} at {b.exchange_ts}: low {b.low} / high {b.high} do not contain open/close")
