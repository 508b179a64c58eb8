"""The risk engine's view of its own orders: open orders with what may still fill, our resting prices,
and the bounded memory of ids seen (duplicate detection in a process that runs for months)."""

from __future__ import annotations

from decimal import Decimal

from trading.records import OrderRequest, OrderType, Side, TimeInForce
from trading.risk.book import ZERO

DEDUP_MEMORY = 200_000  # client order ids / fill ids remembered for duplicate detection


class OpenOrder:
    """An approved order the engine counts as open; ``pending`` is what may still fill."""

    __slots__ = ("order", "buy", "qty", "filled", "final", "pending", "reserve_per_unit", "terminal", "resting")

    def __init__(self, order: OrderRequest, reserve_per_unit: float) -> None:
        self.order = order
        self.buy = order.side is Side.BUY
        self.qty = order.quantity
        self.filled = ZERO
        self.final: Decimal | None = None
        self.pending = ZERO
        self.reserve_per_unit = reserve_per_unit
        self.terminal = False
        # only GTC limit orders rest in the book (IOC/FOK and market orders never do)
        self.resting = (order.order_type is OrderType.LIMIT and order.price is not None
                        and order.time_in_force is TimeInForce.GTC)


class RestingPrices:
    """Prices of our own resting limit orders on one side of one symbol, with the best cached."""

    __slots__ = ("counts", "best", "is_bid")

    def __init__(self, is_bid: bool) -> None:
        self.counts: dict[Decimal, int] = {}
        self.best: Decimal | None = None
        self.is_bid = is_bid

    def add(self, price: Decimal) -> None:
        self.counts[price] = self.counts.get(price, 0) + 1
        if self.best is None or (price > self.best if self.is_bid else price < self.best):
            self.best = price

    def remove(self, price: Decimal) -> None:
        n = self.counts[price] - 1
        if n:
            self.counts[price] = n
            return
        del self.counts[price]
        if price == self.best:
            self.best = (max if self.is_bid else min)(self.counts, default=None)


def bounded_add(memory: dict[str, None], key: str) -> None:
    memory[key] = None
    if len(memory) > DEDUP_MEMORY:
        del memory[next(iter(memory))]
