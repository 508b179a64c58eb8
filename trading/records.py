"""The platform's normalised records: one definition each, used by backtests, the stream and storage.

Prices and sizes are ``Decimal`` so that what is stored (PostgreSQL NUMERIC) is exact; hot loops may
convert to integer ticks or floats internally but records crossing a boundary carry Decimals.
Timestamps are integer nanoseconds since the Unix epoch, UTC: exact, cheap to compare, and free of
time-zone mistakes.  Every record has a deterministic ``id`` so that a record seen twice (a replayed
Kafka message, an overlapping REST page) is recognised and stored once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


def stable_id(*parts: object) -> str:
    """A short deterministic id from the fields that identify a record (same input, same id)."""
    key = "|".join(["" if p is None else str(p) for p in parts])  # a list joins faster than a generator
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


# ---------------------------------------------------------------------------------------------
# Market data
# ---------------------------------------------------------------------------------------------


class AggressorSide(str, Enum):
    BUY = "buy"
    SELL = "sell"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade printed by a venue."""

    exchange: str
    symbol: str  # unified BASE/QUOTE, e.g. "BTC/USDT"
    exchange_ts: int  # ns, venue's clock
    receive_ts: int  # ns, our clock
    price: Decimal
    amount: Decimal
    side: AggressorSide = AggressorSide.UNKNOWN
    trade_id: str | None = None  # the venue's own id when it gives one

    @property
    def id(self) -> str:
        if self.trade_id is not None:
            return stable_id("tick", self.exchange, self.symbol, self.trade_id)
        return stable_id("tick", self.exchange, self.symbol, self.exchange_ts, self.price, self.amount, self.side.value)


@dataclass(frozen=True, slots=True)
class Quote:
    """Best bid and offer."""

    exchange: str
    symbol: str
    exchange_ts: int
    receive_ts: int
    bid: Decimal
    bid_size: Decimal
    ask: Decimal
    ask_size: Decimal

    @property
    def id(self) -> str:
        return stable_id("quote", self.exchange, self.symbol, self.exchange_ts)

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


@dataclass(frozen=True, slots=True)
class Bar:
    """OHLCV over [open_ts, open_ts + interval)."""

    exchange: str
    symbol: str
    interval: str  # "1m", "5m", "1h", "1d" ...
    exchange_ts: int  # ns, the bar's open time
    receive_ts: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    @property
    def id(self) -> str:
        return stable_id("bar", self.exchange, self.symbol, self.interval, self.exchange_ts)


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    size: Decimal


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """L2 book, best level first on each side."""

    exchange: str
    symbol: str
    exchange_ts: int
    receive_ts: int
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    sequence: int | None = None

    @property
    def id(self) -> str:
        return stable_id("book", self.exchange, self.symbol, self.exchange_ts, self.sequence)


MarketRecord = Tick | Quote | Bar | BookSnapshot  # what a market-data source yields


# ---------------------------------------------------------------------------------------------
# Instruments
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instrument:
    """Trading rules of one symbol on one venue."""

    exchange: str
    symbol: str
    tick_size: Decimal = Decimal("0.01")
    lot_size: Decimal = Decimal("0.0001")
    min_notional: Decimal = Decimal("0")
    asset_class: str = "crypto"

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("/")[1]


# ---------------------------------------------------------------------------------------------
# Orders and fills
# ---------------------------------------------------------------------------------------------


class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(str, Enum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(str, Enum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class OrderStatus(str, Enum):
    """An order's state in the OMS (trading.oms.states has the transitions).  NEW is "created": the
    intent is recorded, nothing sent yet; UNKNOWN: a request went out and no answer could be trusted
    (timeout, 5xx, dropped connection, unparsable reply) -- resolved by asking the venue, never by
    sending again."""

    NEW = "new"  # created: recorded by us, not yet sent
    SUBMITTING = "submitting"  # the request is on its way to the venue
    ACKNOWLEDGED = "ack"  # accepted: resting / working at the venue
    PARTIALLY_FILLED = "partially_filled"
    CANCEL_PENDING = "cancel_pending"  # a cancel is on its way; fills can still arrive
    UNKNOWN = "unknown"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_open(self) -> bool:
        return self in _OPEN


_OPEN = frozenset((OrderStatus.NEW, OrderStatus.SUBMITTING, OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED,
                   OrderStatus.CANCEL_PENDING, OrderStatus.UNKNOWN))


class Liquidity(str, Enum):
    MAKER = "maker"
    TAKER = "taker"


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a strategy (or an execution algorithm, or an operator) asks the venue to do."""

    client_order_id: str  # deterministic, derived from the signal that caused it
    account: str
    strategy: str
    exchange: str
    symbol: str
    side: Side
    order_type: OrderType
    quantity: Decimal
    price: Decimal | None = None  # limit price
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    ts: int = 0  # ns, when it was decided
    parent_id: str | None = None  # set for child orders of an execution algorithm


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """A change in an order's life: new, ack, partial/total fill, cancel, reject, expire."""

    client_order_id: str
    account: str
    strategy: str
    symbol: str
    status: OrderStatus
    filled_quantity: Decimal
    remaining_quantity: Decimal
    ts: int
    reason: str | None = None  # reject/cancel reason code
    venue_order_id: str | None = None  # the venue's own id, once it has given one

    @property
    def id(self) -> str:
        return stable_id("order_event", self.client_order_id, self.status.value, self.filled_quantity, self.ts)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of (part of) an order."""

    fill_id: str
    client_order_id: str
    account: str
    strategy: str
    exchange: str
    symbol: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: Liquidity
    ts: int
    parent_id: str | None = None  # the OMS's parent order, for a child order's fill (not stored with the fill)

    @property
    def id(self) -> str:
        return self.fill_id

    @property
    def notional(self) -> Decimal:
        return self.price * self.quantity


@dataclass(slots=True)
class Position:
    """Holdings of one symbol in one account (and, when attributed, one strategy)."""

    account: str
    symbol: str
    strategy: str = ""
    quantity: Decimal = Decimal("0")  # signed: long > 0, short < 0
    avg_price: Decimal = Decimal("0")
    realized_pnl: Decimal = Decimal("0")
    fees: Decimal = Decimal("0")
    extra: dict = field(default_factory=dict)
