"""A flat-book strategy Context for driving a strategy outside the engine (trading.strategies.base.Context)."""

from __future__ import annotations

from decimal import Decimal


class FlatContext:
    """No positions, no prices, a fixed equity: what a strategy sees before it has traded."""

    ts = 0

    def __init__(self, equity: Decimal = Decimal(10000), symbols: list[str] | None = None) -> None:
        self._equity, self._symbols = equity, list(symbols or [])

    def position(self, symbol):
        return Decimal(0)

    def price(self, symbol):
        return None

    def equity(self):
        return self._equity

    def symbols(self):
        return self._symbols
