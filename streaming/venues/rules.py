"""The market's trading rules applied to an order before it is sent: precision (ccxt's amount_to_precision
truncates to the lot step, price_to_precision rounds to the tick), lot limits and minimum notional.  An
order that breaks one is refused here and never reaches the venue (ccxt does not check min notional)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import ccxt

from trading.records import OrderRequest, OrderType, TimeInForce


class Refused(Exception):
    """The order breaks a rule; ``reason`` is the REJECTED event's snake_case reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Prepared:
    amount: Decimal  # what is sent (after truncation to the lot step)
    price: Decimal | None  # limit price after rounding to the tick; None for market orders


def _dec(value) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def prepare(exchange: ccxt.Exchange, order: OrderRequest, reference_price: Decimal | None = None) -> Prepared:
    """``order``'s amount and price as the venue will take them, or ``Refused``.  ``reference_price`` (the last
    trade seen) checks a market order's notional; without one that check is left to the venue."""
    market = (exchange.markets or {}).get(order.symbol)
    if market is None or market.get("active") is False:
        raise Refused("bad_symbol", f"{order.symbol} is not an active market of {exchange.id}")
    if order.order_type not in (OrderType.MARKET, OrderType.LIMIT):
        raise Refused("unsupported_order_type", f"{order.order_type.value} orders are not supported on {exchange.id}")
    if order.quantity <= 0:
        raise Refused("invalid_order", f"quantity must be > 0, got {order.quantity}")
    if order.order_type is OrderType.MARKET:
        if order.post_only:
            raise Refused("invalid_order", "a market order cannot be post-only")
    elif order.price is None or order.price <= 0:
        raise Refused("invalid_order", f"a limit order needs a price > 0, got {order.price}")
    if order.post_only and order.time_in_force is not TimeInForce.GTC:
        raise Refused("invalid_order", f"post-only cannot be combined with {order.time_in_force.value}")
    try:
        amount = Decimal(exchange.amount_to_precision(order.symbol, str(order.quantity)))
    except ccxt.InvalidOrder:
        raise Refused("lot_size", f"quantity {order.quantity} rounds to 0 at {order.symbol}'s lot step") from None
    if amount <= 0:
        raise Refused("lot_size", f"quantity {order.quantity} rounds to 0 at {order.symbol}'s lot step")
    limits = market.get("limits") or {}
    amount_min = _dec((limits.get("amount") or {}).get("min"))
    amount_max = _dec((limits.get("amount") or {}).get("max"))
    if amount_min is not None and amount < amount_min:
        raise Refused("lot_size", f"quantity {amount} is below {order.symbol}'s minimum {amount_min}")
    if amount_max is not None and amount_max > 0 and amount > amount_max:
        raise Refused("lot_size", f"quantity {amount} is above {order.symbol}'s maximum {amount_max}")
    price = None
    if order.order_type is OrderType.LIMIT:
        try:
            price = Decimal(exchange.price_to_precision(order.symbol, str(order.price)))
        except ccxt.InvalidOrder:
            raise Refused("invalid_price", f"price {order.price} rounds to 0 at {order.symbol}'s tick") from None
        price_min = _dec((limits.get("price") or {}).get("min"))
        price_max = _dec((limits.get("price") or {}).get("max"))
        if (price_min is not None and price < price_min) or (price_max is not None and price_max > 0
                                                              and price > price_max):
            raise Refused("invalid_price", f"price {price} is outside {order.symbol}'s range")
    cost_min = _dec((limits.get("cost") or {}).get("min"))
    notional_price = price if price is not None else reference_price
    if cost_min is not None and notional_price is not None and amount * notional_price < cost_min:
        raise Refused("below_min_notional",
                      f"notional {amount * notional_price} is below {order.symbol}'s minimum {cost_min}")
    return Prepared(amount, price)
