"""Tax lots: FIFO/HIFO relief, realised gains, tax-loss harvesting and a wash-sale window.

Every buy opens a lot (quantity, cost per unit, day).  A sell relieves lots oldest-first (FIFO) or
highest-cost-first (HIFO, which realises the least gain).  A loss sale opens a wash-sale window of
``wash_days``: ``blocked`` says a buy-back is not allowed yet; a buy made inside the window anyway
(forced) disallows the loss on up to the quantity bought, records it in ``disallowed``, and adds it to
the new lot's cost basis (the deferral the rule prescribes).  Only buys *after* the loss sale are
tracked (not purchases in the window before it).  ``wash_days=None`` turns the rule off (no window, no
disallowed loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Mapping

from trading.portfolio.errors import TaxLotError

EPS = 1e-12


@dataclass
class Lot:
    lot_id: str
    symbol: str
    qty: float
    cost: float  # per unit, including any disallowed wash-sale loss added to it
    acquired: date


@dataclass(frozen=True)
class Realized:
    symbol: str
    lot_id: str
    qty: float
    proceeds: float
    basis: float
    sold: date
    acquired: date

    @property
    def gain(self) -> float:
        return self.proceeds - self.basis


@dataclass
class _LossSale:
    day: date
    loss_per_unit: float  # > 0
    qty_open: float  # quantity whose loss can still be disallowed by a buy-back


@dataclass
class TaxLedger:
    method: str = "fifo"
    wash_days: int | None = 30
    lots: dict[str, list[Lot]] = field(default_factory=dict)
    realized: list[Realized] = field(default_factory=list)
    disallowed: list[tuple[str, date, float]] = field(default_factory=list)  # (symbol, buy day, loss)
    _losses: dict[str, list[_LossSale]] = field(default_factory=dict)
    _seq: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("fifo", "hifo"):
            raise TaxLotError(f"lot relief method must be 'fifo' or 'hifo', got {self.method!r}")
        if self.wash_days is not None and self.wash_days < 0:
            raise TaxLotError(f"wash_days must be >= 0, got {self.wash_days}")

    def position(self, symbol: str) -> float:
        return sum(l.qty for l in self.lots.get(symbol, []))

    def blocked(self, symbol: str, day: date) -> bool:
        """True while a loss sale of ``symbol`` is within the wash-sale window before ``day``."""
        if self.wash_days is None:
            return False
        return any(day - s.day <= timedelta(days=self.wash_days) and s.qty_open > EPS
                   for s in self._losses.get(symbol, []))

    def buy(self, symbol: str, qty: float, price: float, day: date) -> Lot:
        if not (qty > 0 and price > 0):
            raise TaxLotError(f"buy of {symbol}: quantity and price must be > 0, got {qty} @ {price}")
        basis, left = qty * price, qty
        for sale in self._losses.get(symbol, []) if self.wash_days is not None else []:
            if left <= EPS or day - sale.day > timedelta(days=self.wash_days) or day < sale.day:
                continue
            n = min(left, sale.qty_open)
            if n > EPS:
                loss = n * sale.loss_per_unit
                sale.qty_open -= n
                left -= n
                basis += loss  # deferred into the replacement lot
                self.disallowed.append((symbol, day, loss))
        self._seq += 1
        lot = Lot(f"{symbol}#{self._seq}", symbol, qty, basis / qty, day)
        self.lots.setdefault(symbol, []).append(lot)
        return lot

    def _order(self, symbol: str) -> list[Lot]:
        lots = self.lots.get(symbol, [])
        if self.method == "fifo":
            return sorted(lots, key=lambda l: (l.acquired, l.lot_id))
        return sorted(lots, key=lambda l: (-l.cost, l.acquired, l.lot_id))

    def sell(self, symbol: str, qty: float, price: float, day: date, lot_ids: list[str] | None = None) -> list[Realized]:
        """Relieve ``qty`` by the ledger's method (or from ``lot_ids`` in that order)."""
        if not (qty > 0 and price > 0):
            raise TaxLotError(f"sell of {symbol}: quantity and price must be > 0, got {qty} @ {price}")
        held = self.position(symbol)
        if qty > held + EPS:
            raise TaxLotError(f"sell of {qty} {symbol} exceeds the {held} held")
        order = self._order(symbol)
        if lot_ids is not None:
            by_id = {l.lot_id: l for l in order}
            unknown = [i for i in lot_ids if i not in by_id]
            if unknown:
                raise TaxLotError(f"unknown lot id(s) {unknown} for {symbol}")
            order = [by_id[i] for i in lot_ids]
        out, left = [], qty
        for lot in order:
            if left <= EPS:
                break
            n = min(lot.qty, left)
            out.append(Realized(symbol, lot.lot_id, n, n * price, n * lot.cost, day, lot.acquired))
            lot.qty -= n
            left -= n
        if left > EPS:
            raise TaxLotError(f"lots {lot_ids} hold less than the {qty} {symbol} to sell")
        self.lots[symbol] = [l for l in self.lots[symbol] if l.qty > EPS]
        self.realized.extend(out)
        loss_qty = sum(r.qty for r in out if r.gain < 0)
        if loss_qty > EPS and self.wash_days is not None:
            loss = -sum(r.gain for r in out if r.gain < 0)
            self._losses.setdefault(symbol, []).append(_LossSale(day, loss / loss_qty, loss_qty))
        return out

    def harvest_candidates(self, prices: Mapping[str, float], threshold: float) -> list[tuple[Lot, float]]:
        """Lots whose unrealised loss exceeds ``threshold`` of their cost, with that loss (largest first)."""
        if not threshold >= 0:
            raise TaxLotError(f"harvest threshold must be >= 0, got {threshold}")
        out = []
        for symbol, lots in sorted(self.lots.items()):
            if symbol not in prices:
                continue
            for lot in lots:
                loss = (lot.cost - prices[symbol]) * lot.qty
                if loss > threshold * lot.cost * lot.qty:
                    out.append((lot, loss))
        return sorted(out, key=lambda t: -t[1])

    def harvest(self, prices: Mapping[str, float], threshold: float, day: date) -> list[Realized]:
        """Sell every lot with a loss beyond ``threshold`` (opening wash-sale windows for their symbols)."""
        out = []
        for lot, _ in self.harvest_candidates(prices, threshold):
            out += self.sell(lot.symbol, lot.qty, prices[lot.symbol], day, lot_ids=[lot.lot_id])
        return out


def tax_aware_orders(ledger: TaxLedger, target_qty: Mapping[str, float], day: date) -> tuple[dict[str, float], list[str]]:
    """Quantity changes to reach ``target_qty``, except buys the wash-sale window blocks.

    Returns (orders symbol -> signed quantity, blocked symbols). Sells are left to ``ledger.sell``, which
    relieves lots by the ledger's method (HIFO realises the least gain).
    """
    orders, blocked = {}, []
    for symbol in sorted(set(target_qty) | set(ledger.lots)):
        delta = float(target_qty.get(symbol, 0.0)) - ledger.position(symbol)
        if abs(delta) <= EPS:
            continue
        if delta > 0 and ledger.blocked(symbol, day):
            blocked.append(symbol)
            continue
        orders[symbol] = delta
    return orders, blocked
