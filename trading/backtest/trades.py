"""Round trips from fills: a trade opens when a position leaves zero and closes when it returns to zero
(a fill that flips the sign closes one trade and opens the next with the remainder).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable

from trading.records import Fill

ZERO = Decimal(0)


@dataclass
class Trade:
    symbol: str
    strategy: str
    side: str  # "long" / "short"
    entry_time: int  # ns
    entry_price: Decimal  # volume-weighted over the opening fills
    quantity: Decimal  # total quantity opened
    exit_time: int | None = None
    exit_price: Decimal | None = None  # volume-weighted over the closing fills
    pnl: Decimal = ZERO  # realised, net of all fees of the trade's fills
    fees: Decimal = ZERO
    n_fills: int = 0
    _closed_qty: Decimal = ZERO
    _exit_notional: Decimal = ZERO
    _entry_notional: Decimal = ZERO

    @property
    def is_open(self) -> bool:
        return self.exit_time is None

    def as_dict(self) -> dict:
        return {
            "symbol": self.symbol,
            "strategy": self.strategy,
            "side": self.side,
            "entry_time": self.entry_time,
            "entry_price": str(self.entry_price),
            "exit_time": self.exit_time,
            "exit_price": None if self.exit_price is None else str(self.exit_price),
            "quantity": str(self.quantity),
            "pnl": str(self.pnl),
            "fees": str(self.fees),
        }


def round_trips(fills: Iterable[Fill]) -> list[Trade]:
    """Trades per (strategy, symbol), in the order they opened; the last may still be open."""
    pos: dict[tuple[str, str], Decimal] = {}
    open_: dict[tuple[str, str], Trade] = {}
    out: list[Trade] = []
    for f in fills:
        key = (f.strategy, f.symbol)
        q = pos.get(key, ZERO)
        signed = f.quantity * f.side.sign
        remaining, fee_left = f.quantity, f.fee
        if q != 0 and (q > 0) != (signed > 0):  # reducing / closing / flipping
            t = open_[key]
            close_qty = min(abs(q), f.quantity)
            fee_part = f.fee * close_qty / f.quantity
            direction = 1 if q > 0 else -1
            t.pnl += (f.price - t.entry_price) * close_qty * direction - fee_part
            t.fees += fee_part
            t.n_fills += 1
            t._closed_qty += close_qty
            t._exit_notional += f.price * close_qty
            q += close_qty * (-direction)
            remaining -= close_qty
            fee_left -= fee_part
            if q == 0:
                t.exit_time, t.exit_price = f.ts, t._exit_notional / t._closed_qty
                del open_[key]
        if remaining > 0:  # opening or adding
            t = open_.get(key)
            if t is None:
                t = open_[key] = Trade(f.symbol, f.strategy, "long" if signed > 0 else "short", f.ts, f.price, ZERO)
                out.append(t)
            t._entry_notional += f.price * remaining
            t.quantity += remaining
            t.entry_price = t._entry_notional / t.quantity
            t.pnl -= fee_left
            t.fees += fee_left
            t.n_fills += 1
            q += remaining * (1 if signed > 0 else -1)
        pos[key] = q
    return out
