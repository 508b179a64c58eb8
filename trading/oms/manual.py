"""Manual orders: an operator's order, checked and shaped here, then sent like any strategy's order (risk
engine, then the OMS). Pure: the caller (streaming/trader.py) supplies the account, time and command id.

A manual order is attributed to the slot ``MANUAL`` (the ``strategy`` of its order, fills and position), so an
operator's position never mixes with a strategy slot's -- a strategy sizes against its own slot's position and
would otherwise trade the operator's quantity away at its next decision. Who placed it is the verified identity
of the control message (the audit row names it with the client order id).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from trading.records import OrderRequest, OrderStatus, OrderType, Side, stable_id

MANUAL = "manual"  # the strategy slot tag of operators' orders
ORDER_TYPES = (OrderType.MARKET, OrderType.LIMIT)


class ManualOrderError(ValueError):
    """A manual order or cancel that cannot be sent (one line naming the field or the order)."""


class ManualOrderRefused(ManualOrderError):
    """The risk engine refused the manual order: ``reason`` its check's code, ``detail`` why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"the risk engine refused the order: {reason}{': ' + detail if detail else ''}")


@dataclass(frozen=True, slots=True)
class ManualOrder:
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType = OrderType.MARKET
    price: Decimal | None = None


def _decimal(name: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ManualOrderError(f"{name} must be a decimal number, got {type(value).__name__}")
    try:
        d = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError):
        raise ManualOrderError(f"{name} {str(value)[:40]!r} is not a decimal number") from None
    if not d.is_finite() or d <= 0:
        raise ManualOrderError(f"{name} must be a finite decimal > 0, got {str(value)[:40]!r}")
    return d


def parse_manual_order(fields: Mapping[str, Any]) -> ManualOrder:
    """A ManualOrder from the control message's fields (symbol, side, quantity, order_type, price); raises
    ManualOrderError naming the first bad field. Tick/lot sizes and limits are the risk engine's to check."""
    symbol = fields.get("symbol")
    if not isinstance(symbol, str) or not symbol or len(symbol) > 64:
        raise ManualOrderError("a manual order needs its `symbol`")
    try:
        side = Side(fields.get("side"))
    except (ValueError, TypeError):
        raise ManualOrderError(f"side must be buy or sell, got {str(fields.get('side'))[:20]!r}") from None
    raw_type = fields.get("order_type") or OrderType.MARKET.value
    try:
        order_type = OrderType(raw_type)
    except (ValueError, TypeError):
        order_type = None
    if order_type not in ORDER_TYPES:
        raise ManualOrderError(f"order_type must be market or limit, got {str(raw_type)[:20]!r}")
    quantity = _decimal("quantity", fields.get("quantity"))
    price_raw = fields.get("price")
    if price_raw in (None, ""):
        price = None
    else:
        price = _decimal("price", price_raw)
    if (order_type is OrderType.LIMIT) != (price is not None):
        raise ManualOrderError("a limit order needs a price, a market order has none")
    return ManualOrder(symbol, side, quantity, order_type, price)


def manual_client_order_id(account: str, command_id: str) -> str:
    """Derived from the control command (its nonce): a redelivered command yields the same id, which the OMS
    refuses as known -- the order is never sent twice."""
    return stable_id("manual_order", account, command_id)


def manual_request(order: ManualOrder, *, account: str, exchange: str, command_id: str, ts: int) -> OrderRequest:
    return OrderRequest(client_order_id=manual_client_order_id(account, command_id), account=account, strategy=MANUAL,
                        exchange=exchange, symbol=order.symbol, side=order.side, order_type=order.order_type,
                        quantity=order.quantity, price=order.price, ts=ts)


def not_cancellable(client_order_id: str, status: OrderStatus | str | None) -> str:
    """Why an order cannot be canceled (for the operator): unknown here, or already final."""
    if status is None:
        return f"no open order {client_order_id!r} in this account"
    value = status.value if isinstance(status, OrderStatus) else str(status)
    return f"order {client_order_id!r} is already {value}: nothing to cancel"
