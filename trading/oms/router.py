"""The order router: how a target change is worked at the venue.

An order small against recent volume goes out as it is.  A larger one becomes a parent order that keeps
each child within a participation limit of the recent traded volume: an Iceberg for a limit order, a
TWAP for a market order (a VWAP when a volume profile for the horizon is known).  The algorithms are
``trading.execution``'s; this module only chooses and parameterises them, and describes each parent as
a ``ParentRecord`` for the system of record (so it can be resumed after a restart, and its
implementation shortfall reported).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from trading.execution import TWAP, VWAP, ExecutionError, Iceberg, ParentOrder
from trading.records import NS_PER_S, OrderRequest, OrderType, Side

NS_PER_MIN = 60 * NS_PER_S


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """``participation``: the largest share of the recent traded volume one child may take per slice;
    0 turns routing off (every order goes out as it is)."""

    participation: float = 0.10
    volume_window_s: int = 300
    slice_s: int = 60
    max_slices: int = 120

    def __post_init__(self) -> None:
        if not (0 <= self.participation <= 1):
            raise ValueError(f"router participation must be within [0, 1], got {self.participation!r}")
        if self.volume_window_s <= 0 or self.slice_s <= 0 or self.max_slices < 2:
            raise ValueError("router volume_window_s and slice_s must be > 0 and max_slices >= 2")


@dataclass(slots=True)
class ParentRecord:
    """A parent order as stored (``parent_orders``)."""

    parent_id: str
    account: str
    strategy: str
    exchange: str
    symbol: str
    side: Side
    algorithm: str
    quantity: Decimal
    arrival_price: Decimal
    params: dict[str, Any]
    status: str = "working"  # working | done | canceled | halted
    filled_quantity: Decimal = Decimal(0)
    reason: str | None = None
    created_ts: int = 0
    updated_ts: int = 0


class _Volume:
    """Traded volume of one symbol over a sliding window (ts in ns)."""

    __slots__ = ("window", "items", "total")

    def __init__(self, window_ns: int) -> None:
        self.window, self.items, self.total = window_ns, deque(), 0.0

    def add(self, ts: int, qty: float) -> None:
        self.items.append((ts, qty))
        self.total += qty
        horizon = ts - self.window
        items = self.items
        while items[0][0] < horizon:
            self.total -= items.popleft()[1]


@dataclass
class Router:
    config: RouterConfig = field(default_factory=RouterConfig)
    lot_sizes: dict[str, Decimal] = field(default_factory=dict)
    _volume: dict[str, _Volume] = field(default_factory=dict)

    def on_trade(self, symbol: str, ts: int, qty: float) -> None:
        v = self._volume.get(symbol)
        if v is None:
            v = self._volume[symbol] = _Volume(self.config.volume_window_s * NS_PER_S)
        v.add(ts, qty)

    def slice_cap(self, symbol: str) -> Decimal | None:
        """The most one child may take in one slice, or None when no volume has been seen."""
        v = self._volume.get(symbol)
        if v is None or v.total <= 0 or self.config.participation <= 0:
            return None
        per_slice = v.total * self.config.slice_s / self.config.volume_window_s
        return Decimal(repr(per_slice * self.config.participation))

    def plan(self, order: OrderRequest, price: Decimal | None, ts: int,
             profile: list[float] | None = None) -> tuple[ParentOrder, ParentRecord] | None:
        """The parent order working ``order`` (its client id becomes the parent id), or None to send it as
        it is.  Orders that are already children (``parent_id`` set, e.g. the liquidator's) are sent as
        they are: their schedule is their own."""
        if order.parent_id is not None or price is None or price <= 0:
            return None
        if order.order_type not in (OrderType.MARKET, OrderType.LIMIT):
            return None
        cap = self.slice_cap(order.symbol)
        lot = self.lot_sizes.get(order.symbol, Decimal("0.0001"))
        if cap is None or order.quantity <= cap or order.quantity % lot != 0:
            return None
        cap = max((cap / lot).to_integral_value(rounding=ROUND_DOWN) * lot, lot)
        n = min(math.ceil(order.quantity / cap), self.config.max_slices)
        step = self.config.slice_s * NS_PER_S
        common = (order.client_order_id, order.account, order.strategy, order.exchange, order.symbol, order.side,
                  order.quantity, price)
        try:
            if order.order_type is OrderType.LIMIT:
                algo: ParentOrder = Iceberg(*common, lot_size=lot, limit_price=order.price, display_quantity=cap,
                                            start_ts=ts)
                name, params = "iceberg", {"display_quantity": str(cap), "start_ts": ts, "limit_price": str(order.price)}
            elif profile is not None and len(profile) == n:
                algo = VWAP(*common, lot_size=lot, start_ts=ts, end_ts=ts + n * step, profile=profile)
                name, params = "vwap", {"start_ts": ts, "end_ts": ts + n * step, "profile": list(profile)}
            else:
                algo = TWAP(*common, lot_size=lot, start_ts=ts, end_ts=ts + n * step, n_slices=n)
                name, params = "twap", {"start_ts": ts, "end_ts": ts + n * step, "n_slices": n}
        except ExecutionError:
            return None  # a parameter the algorithm refuses (e.g. off-lot): the order goes out whole
        params.update(participation=self.config.participation, slice_cap=str(cap))
        rec = ParentRecord(order.client_order_id, order.account, order.strategy, order.exchange, order.symbol,
                           order.side, name, order.quantity, common[7], params, created_ts=ts, updated_ts=ts)
        return algo, rec


def rebuild(rec: ParentRecord, lot: Decimal) -> ParentOrder:
    """The algorithm object of a stored parent (after a restart); its fills are fed back by the caller."""
    p = rec.params
    common = (rec.parent_id, rec.account, rec.strategy, rec.exchange, rec.symbol, rec.side, rec.quantity,
              rec.arrival_price)
    if rec.algorithm == "iceberg":
        return Iceberg(*common, lot_size=lot, limit_price=Decimal(p["limit_price"]),
                       display_quantity=Decimal(p["display_quantity"]), start_ts=int(p["start_ts"]))
    if rec.algorithm == "vwap":
        return VWAP(*common, lot_size=lot, start_ts=int(p["start_ts"]), end_ts=int(p["end_ts"]),
                    profile=[float(x) for x in p["profile"]])
    if rec.algorithm == "twap":
        return TWAP(*common, lot_size=lot, start_ts=int(p["start_ts"]), end_ts=int(p["end_ts"]),
                    n_slices=int(p["n_slices"]))
    raise ExecutionError(f"parent {rec.parent_id}: unknown algorithm {rec.algorithm!r}")
