"""Iceberg: show only ``display_quantity`` of a limit order at a time; when it fills, show the next part."""

from __future__ import annotations

from decimal import Decimal

from trading.execution.base import Action, ExecutionError, ParentOrder
from trading.records import Fill


class Iceberg(ParentOrder):
    """Child n (1, 2, ...) is a limit order for min(display_quantity, remaining) at ``limit_price``.

    The first child goes out at the first ``on_time`` at or after ``start_ts``; each later one when the
    previous child has filled completely (from ``on_fill``).  A child closed without filling (canceled by
    someone else) is replaced at the next ``on_time``.
    """

    def __init__(self, *args, display_quantity: Decimal, start_ts: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.limit_price is None:
            raise ExecutionError("an Iceberg needs a limit_price")
        if not isinstance(display_quantity, Decimal) or not display_quantity.is_finite() or display_quantity <= 0:
            raise ExecutionError(f"display_quantity must be a finite Decimal > 0, got {display_quantity!r}")
        if display_quantity % self.lot_size != 0:
            raise ExecutionError(f"display_quantity {display_quantity} is not a multiple of lot_size {self.lot_size}")
        self.display_quantity = display_quantity
        self.start_ts = start_ts
        self.n_children = 0

    def _next_child(self, ts: int) -> list[Action]:
        if self._open:
            return []
        qty = min(self.display_quantity, self.quantity - self.filled)
        self.n_children += 1
        return [self._child(self.n_children, qty, ts)]

    def _after_resume(self, n_children: int) -> None:
        self.n_children = n_children

    def _on_time(self, ts: int) -> list[Action]:
        return self._next_child(ts) if ts >= self.start_ts else []

    def _after_fill(self, fill: Fill) -> list[Action]:
        return self._next_child(fill.ts)
