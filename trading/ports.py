"""The ports of the trading kernel: what the strategy engine needs from the world, as Protocols.

``trading.strategies.engine.StrategyEngine`` is typed against these and nothing else, so an adapter
plugs in by implementing one port:

  ExecutionVenue    where orders go and where order events and fills come from.  Implemented by
                    ``trading.venue.PaperVenue`` (backtests: bar or book fill model) and by the stream's
                    ``streaming.trader.TickFillVenue``; a live exchange adapter (ccxt, #11) implements
                    this port and nothing else, and is handed to ``streaming.trader.Trader(venue=...)``.
  Ledger            cash, positions at average cost, P&L: ``trading.ledger.Portfolio``.
  RiskGate          pre-trade check and post-trade state: ``trading.risk.RiskEngine``.
  Clock             the time the risk gate sees: ``trading.clock.BarClock`` (simulated time, advanced
                    by the engine to each event's time in backtests and in the stream).
  MarketDataSource  normalised market records: ``trading.marketdata.SimVenue``, ``Replayer``.

Events a venue reports back (``trading.records``):

  OrderEvent  a status change of one order, keyed by ``client_order_id``: ACKNOWLEDGED (working at the
              venue) and PARTIALLY_FILLED are open; FILLED, CANCELED, REJECTED (``reason`` says why) and
              EXPIRED end it.  ``filled_quantity`` is the
              cumulative filled quantity at that point; a terminal status ends the order.
  Fill        one execution: ``fill_id`` unique and deterministic (the same execution reported twice
              carries the same id, so ledgers ignore the repeat), ``quantity`` > 0 with ``side``,
              ``price``, ``fee`` in ``fee_currency`` (see ``trading.ledger`` for which currencies are
              accepted), ``ts`` the execution time in ns.

Contract for every method returning events: the list is in the order things happened, a fill before
the OrderEvent that reports the status it caused; an empty list (or any falsy sequence) when nothing
happened, which is the common case on the per-tick path and is cheap to return.

These Protocols are for static typing and documentation: the hot path never runs ``isinstance`` on
them (runtime-checkable Protocol checks cost microseconds each).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from trading.records import Bar, Fill, MarketRecord, OrderEvent, OrderRequest, Position, Tick

if TYPE_CHECKING:
    from trading.risk import RiskDecision

VenueEvents = Sequence[OrderEvent | Fill]


@runtime_checkable
class ExecutionVenue(Protocol):
    """Accepts orders, reports what happened to them.

    Identity: an order is known by its ``client_order_id`` (deterministic, from
    ``trading.records.stable_id``); a venue must refuse (REJECTED event) an id it has already seen
    rather than trade it twice -- that is what makes replays after a restart safe.

    Time: ``ts`` arguments are the caller's event time in ns (simulated or wall clock); events carry
    the venue's own execution time.

    ``on_bar`` / ``on_tick`` are the venue's feed.  A simulated venue fills resting and market orders
    against them.  A live venue ignores the market data and returns the reports (order events, fills)
    its exchange connection has received since the previous call: the engine applies venue reports
    only from these return values, in its own thread, so a live adapter queues what its socket
    delivers and hands it over here.
    """

    def submit(self, order: OrderRequest) -> VenueEvents:
        """Send one order.  Returns its acknowledgement (ACKNOWLEDGED or REJECTED) and any fills that
        happened at once."""
        ...

    def cancel(self, client_order_id: str, ts: int) -> VenueEvents:
        """Cancel an open order: a CANCELED event, or nothing if it had already ended."""
        ...

    def replace(self, client_order_id: str, new_quantity: Decimal | None, new_price: Decimal | None,
                ts: int) -> VenueEvents:
        """Change an open order's total quantity and/or limit price (None keeps it)."""
        ...

    def open_orders(self, symbol: str | None = None) -> list[OrderRequest]:
        """Orders not yet in a terminal state (of one symbol, or all)."""
        ...

    def on_bar(self, bar: Bar) -> VenueEvents:
        """A bar closed (simulated venues fill against it); returns what happened since the last call."""
        ...

    def on_tick(self, tick: Tick) -> VenueEvents:
        """A trade printed (simulated venues fill against it); returns what happened since the last call."""
        ...


@runtime_checkable
class Ledger(Protocol):
    """Cash and positions of one account at average cost (``trading.ledger.Portfolio``)."""

    def apply_fill(self, fill: Fill) -> None:
        """Book one fill; a fill id seen before is ignored (replays are safe), bad fills raise."""
        ...

    def mark(self, symbol: str, price: Decimal) -> None:
        """The latest price of ``symbol``, for unrealised P&L and equity."""
        ...

    def position(self, symbol: str, strategy: str | None = None) -> Position:
        """The account's position (or only the part traded by ``strategy``)."""
        ...

    def equity(self) -> Decimal:
        """Cash plus positions at their last price, in the quote currency."""
        ...

    @property
    def cash(self) -> Decimal: ...


@runtime_checkable
class RiskGate(Protocol):
    """Pre-trade approval and the post-trade state it needs (``trading.risk.RiskEngine``).

    The engine calls ``check`` for every order before the venue sees it, and feeds back every venue
    event (``on_fill``, ``on_order_event``) and every mark (``on_price``), in that order per event.
    """

    def check(self, order: OrderRequest) -> "RiskDecision":
        """Approve or refuse one order (``.approved``, ``.reason`` a snake_case code)."""
        ...

    def on_fill(self, fill: Fill) -> None: ...

    def on_order_event(self, event: OrderEvent) -> None: ...

    def on_price(self, symbol: str, price: Decimal, ts: int) -> None: ...

    def size_multiplier(self, strategy: str | None = None) -> Decimal:
        """1 normally; below 1 while a drawdown tier scales positions down; 0 when halted."""
        ...


@runtime_checkable
class Clock(Protocol):
    """Time in ns as the risk gate sees it.  The engine sets it to each event's time."""

    def set(self, ts: int) -> None: ...

    def __call__(self) -> int: ...


@runtime_checkable
class MarketDataSource(Protocol):
    """A source of normalised market records (sim, ccxt REST/WebSocket, replay).

    ``stream()`` yields records in availability order (``trading.marketdata.source.available_ts``: a
    bar when it closes, anything else at its exchange time); ``fetch_bars`` is the batch path for
    research and backtests.
    """

    def stream(self) -> AsyncIterator[MarketRecord]: ...

    def fetch_bars(self, symbol: str, interval: str, start_ns: int, end_ns: int) -> list[Bar]: ...
