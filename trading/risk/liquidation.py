"""Emergency liquidation: close a position with a TWAP-like schedule of market child orders, each
within the impact limits (a notional cap and a fraction of recent volume)."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from trading.records import NS_PER_S, OrderRequest, OrderType, Side, TimeInForce, stable_id
from trading.risk.limits import LiquidationLimits

DEFAULT_LOT = Decimal("0.00000001")  # when neither the limits nor the instrument give a lot size


def floor_to_lot(qty: Decimal, lot: Decimal) -> Decimal:
    return (qty / lot).to_integral_value(rounding=ROUND_DOWN) * lot


def child_cap(limits: LiquidationLimits, price: float | None, recent_volume: Decimal | None,
              lot: Decimal) -> Decimal | None:
    """Largest child quantity the impact limits allow (a multiple of ``lot``, at least one lot), or
    None when no limit applies (no cap configured, or none computable: no price, no volume)."""
    caps: list[Decimal] = []
    if limits.max_child_notional is not None and price:
        caps.append(Decimal(repr(limits.max_child_notional / price)))
    if limits.max_volume_fraction is not None and recent_volume:
        caps.append(recent_volume * Decimal(repr(limits.max_volume_fraction)))
    if not caps:
        return None
    return max(floor_to_lot(min(caps), lot), lot)


def split_quantity(total: Decimal, cap: Decimal | None, lot: Decimal) -> list[Decimal]:
    """Split ``total`` into the fewest near-equal lot-multiple children of at most ``cap`` each (plus
    one more child for an off-lot remainder, if the position was not on lot); they sum to ``total``."""
    if cap is None or total <= cap:
        return [total]
    lots = int((total / lot).to_integral_value(rounding=ROUND_DOWN))
    cap_lots = int((cap / lot).to_integral_value(rounding=ROUND_DOWN))
    children: list[Decimal] = []
    if lots:
        n = -(-lots // cap_lots)  # ceiling division
        base, extra = divmod(lots, n)
        children = [(base + 1) * lot] * extra + [base * lot] * (n - extra)
    remainder = total - lots * lot
    if remainder:
        children.append(remainder)
    return children


def liquidation_orders(account: str, strategy: str, exchange: str, symbol: str, position: Decimal,
                       cap: Decimal | None, lot: Decimal, now: int, interval_s: float,
                       request_id: str) -> list[OrderRequest]:
    """Child market orders closing ``position`` (signed), spaced ``interval_s`` apart from ``now``.
    Client ids derive from the request id, strategy, symbol and child index: replaying the same
    request yields the same orders."""
    if position == 0:
        return []
    side = Side.SELL if position > 0 else Side.BUY
    parent = stable_id("liquidate", request_id, account, strategy, symbol)
    step = int(interval_s * NS_PER_S)
    return [
        OrderRequest(
            client_order_id=stable_id("liquidate-child", parent, i), account=account, strategy=strategy,
            exchange=exchange, symbol=symbol, side=side, order_type=OrderType.MARKET, quantity=qty,
            time_in_force=TimeInForce.IOC, ts=now + i * step, parent_id=parent,
        )
        for i, qty in enumerate(split_quantity(abs(position), cap, lot))
    ]
