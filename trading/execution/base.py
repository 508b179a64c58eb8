"""Parent orders: an algorithm that works a quantity through child orders over time.

A parent is driven by its owner: ``on_time(ts)`` at each clock step, ``on_fill(fill)`` for every fill and
``on_event(event)`` for every order event (feed it all of them; those of other orders are ignored).  Each
returns the actions to take now -- child ``OrderRequest``s to submit and ``CancelRequest``s to send.
Feed a step's fills and events before calling ``on_time`` for the next step.

Child client ids are ``stable_id("child", parent_id, n)`` with n the slice / child number, so a replayed
parent produces the same children.  A child the venue rejects halts the parent (``halted_reason``), so a
rejected schedule is never retried in a loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal

from trading.records import Fill, OrderEvent, OrderRequest, OrderStatus, OrderType, Side, TimeInForce, stable_id

_ZERO = Decimal(0)
_BPS = Decimal(10_000)


class ExecutionError(ValueError):
    """Bad parameters for an execution algorithm."""


@dataclass(frozen=True, slots=True)
class CancelRequest:
    client_order_id: str
    ts: int


Action = OrderRequest | CancelRequest


@dataclass(frozen=True, slots=True)
class Progress:
    quantity: Decimal
    filled: Decimal

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def percent(self) -> float:
        return float(self.filled / self.quantity * 100)


@dataclass(frozen=True, slots=True)
class ShortfallReport:
    """Implementation shortfall against the arrival price; positive numbers are costs.

    price_cost = side sign x (sum of fill notionals - arrival price x filled), cost = price_cost + fees,
    bps figures are per unit of arrival notional of the filled quantity.  opportunity_cost, when a final
    price is given, is what the unfilled rest lost: side sign x (final - arrival) x unfilled.
    """

    side: Side
    arrival_price: Decimal
    filled: Decimal
    unfilled: Decimal
    avg_price: Decimal | None
    price_cost: Decimal
    fees: Decimal
    cost: Decimal
    price_bps: Decimal
    cost_bps: Decimal
    opportunity_cost: Decimal


def _positive_decimal(name: str, x: object) -> Decimal:
    if not isinstance(x, Decimal) or not x.is_finite() or x <= 0:
        raise ExecutionError(f"{name} must be a finite Decimal > 0, got {x!r}")
    return x


class ParentOrder(ABC):
    """Shared bookkeeping of parent orders: children, fills, progress, shortfall, cancel."""

    def __init__(self, parent_id: str, account: str, strategy: str, exchange: str, symbol: str, side: Side,
                 quantity: Decimal, arrival_price: Decimal, lot_size: Decimal = Decimal("0.0001"),
                 limit_price: Decimal | None = None, time_in_force: TimeInForce = TimeInForce.GTC) -> None:
        self.quantity = _positive_decimal("quantity", quantity)
        self.arrival_price = _positive_decimal("arrival_price", arrival_price)
        self.lot_size = _positive_decimal("lot_size", lot_size)
        if quantity % lot_size != 0:
            raise ExecutionError(f"quantity {quantity} is not a multiple of lot_size {lot_size}")
        if limit_price is not None:
            _positive_decimal("limit_price", limit_price)
        if not isinstance(side, Side):
            raise ExecutionError(f"side must be a Side, got {side!r}")
        self.parent_id = parent_id
        self.account, self.strategy, self.exchange, self.symbol = account, strategy, exchange, symbol
        self.side = side
        self.limit_price = limit_price
        self.time_in_force = time_in_force
        self.filled = _ZERO
        self.notional = _ZERO
        self.fees = _ZERO
        self.canceled = False
        self.halted_reason: str | None = None
        self._open: dict[str, Decimal] = {}  # child id -> quantity not yet filled, while the child is open
        self._children: set[str] = set()
        self._fill_ids: set[str] = set()

    # ------------------------------------------------------------------ driving

    def on_time(self, ts: int) -> list[Action]:
        if not self.active:
            return []
        return self._on_time(ts)

    def on_fill(self, fill: Fill) -> list[Action]:
        cid = fill.client_order_id
        if cid not in self._children or fill.fill_id in self._fill_ids:
            return []
        self._fill_ids.add(fill.fill_id)
        self.filled += fill.quantity
        self.notional += fill.price * fill.quantity
        self.fees += fill.fee
        if cid in self._open:
            left = self._open[cid] - fill.quantity
            if left > 0:
                self._open[cid] = left
            else:
                del self._open[cid]
        return self._after_fill(fill) if self.active else []

    def on_event(self, event: OrderEvent) -> list[Action]:
        cid = event.client_order_id
        if cid not in self._children or event.status.is_open or event.status is OrderStatus.FILLED:
            return []
        self._open.pop(cid, None)  # canceled, expired or rejected: nothing more will fill
        if event.status is OrderStatus.REJECTED and self.halted_reason is None:
            self.halted_reason = f"child {cid} rejected: {event.reason}"
        return []

    def resume(self, children: list[str], fills: list[Fill], still_open: dict[str, Decimal] | None = None) -> None:
        """Rebuild the state of a parent worked before a restart: its children so far, their fills, and the
        children still open at the venue (client id -> quantity not yet filled; none on the paper venue,
        whose open orders died with the worker)."""
        self._children.update(children)
        for f in fills:
            self.on_fill(f)
        self._open = dict(still_open or {})
        self._after_resume(len(children))

    def _after_resume(self, n_children: int) -> None:
        pass

    def cancel(self, ts: int) -> list[CancelRequest]:
        """Stop the parent: no more children; cancels for the children still open."""
        self.canceled = True
        return self._cancel_open(ts)

    # ------------------------------------------------------------------ reporting

    @property
    def active(self) -> bool:
        return not self.canceled and self.halted_reason is None and self.filled < self.quantity

    @property
    def progress(self) -> Progress:
        return Progress(self.quantity, self.filled)

    @property
    def open_children(self) -> dict[str, Decimal]:
        return dict(self._open)

    def shortfall(self, final_price: Decimal | None = None) -> ShortfallReport:
        sign = self.side.sign
        arrival_notional = self.arrival_price * self.filled
        price_cost = sign * (self.notional - arrival_notional)
        cost = price_cost + self.fees
        unfilled = self.quantity - self.filled
        opportunity = _ZERO if final_price is None else sign * (final_price - self.arrival_price) * unfilled
        if self.filled:
            avg = self.notional / self.filled
            price_bps, cost_bps = price_cost / arrival_notional * _BPS, cost / arrival_notional * _BPS
        else:
            avg, price_bps, cost_bps = None, _ZERO, _ZERO
        return ShortfallReport(self.side, self.arrival_price, self.filled, unfilled, avg, price_cost, self.fees,
                               cost, price_bps, cost_bps, opportunity)

    # ------------------------------------------------------------------ for subclasses

    @abstractmethod
    def _on_time(self, ts: int) -> list[Action]:
        """The algorithm's children / cancels due at ``ts`` (only called while active)."""

    def _after_fill(self, fill: Fill) -> list[Action]:
        return []

    def child_id(self, n: int) -> str:
        return stable_id("child", self.parent_id, n)

    def _child(self, n: int, qty: Decimal, ts: int) -> OrderRequest:
        cid = self.child_id(n)
        self._children.add(cid)
        self._open[cid] = qty
        order_type = OrderType.MARKET if self.limit_price is None else OrderType.LIMIT
        return OrderRequest(cid, self.account, self.strategy, self.exchange, self.symbol, self.side, order_type, qty,
                            price=self.limit_price, time_in_force=self.time_in_force, ts=ts, parent_id=self.parent_id)

    def _cancel_open(self, ts: int) -> list[CancelRequest]:
        out = [CancelRequest(cid, ts) for cid in self._open]
        self._open.clear()  # a canceled child is treated as closed; late fills are still counted
        return out

    def _floor_lot(self, q: Decimal) -> Decimal:
        return (q / self.lot_size).to_integral_value(rounding="ROUND_FLOOR") * self.lot_size
