"""What the venue says it holds, for reconciliation: recon's records (trading/oms/reconcile.py, h/recon).

Until that module is on this branch, identical stand-ins are defined here (same names, fields and order);
once it is, these names are recon's own classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from trading.records import Liquidity, OrderStatus, OrderType, Side

try:  # recon's module, once merged
    from trading.oms.reconcile import VenueOrder, VenueSnapshot, VenueTrade
except ImportError:  # pragma: no cover - the stand-ins below
    @dataclass(frozen=True, slots=True)
    class VenueOrder:
        client_order_id: str | None
        venue_order_id: str
        symbol: str
        side: Side
        order_type: OrderType
        quantity: Decimal
        price: Decimal | None
        status: OrderStatus
        filled_quantity: Decimal
        ts: int  # ns, when the venue last changed it (or created it)

    @dataclass(frozen=True, slots=True)
    class VenueTrade:
        trade_id: str  # the venue's trade id; the Fill id is stable_id("fill", exchange, trade_id)
        client_order_id: str | None
        venue_order_id: str
        symbol: str
        side: Side
        price: Decimal
        quantity: Decimal
        fee: Decimal
        fee_currency: str
        liquidity: Liquidity
        ts: int

    @dataclass(frozen=True, slots=True)
    class VenueSnapshot:
        ts: int
        open_orders: Sequence[VenueOrder] = ()
        trades: Sequence[VenueTrade] = ()
        balances: Mapping[str, Decimal] = field(default_factory=dict)

__all__ = ["VenueOrder", "VenueSnapshot", "VenueTrade"]
