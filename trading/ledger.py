"""The ledger: average-cost accounting of fills, written once.  ``Portfolio`` (cash, positions, P&L of one
account, the trading.ports.Ledger) and the risk engine's book (trading.risk) both book fills with
``Holding.trade`` and take fees by ``fee_terms``.

The venue returns ``Fill`` records (those are the fill events); the caller applies each one here with
``apply_fill``.  Applying a fill again is a no-op while its id is among the last ``dedup_window`` fill ids
applied (fill ids are deterministic), so redelivered and replayed fills are safe; see ``Portfolio``.

The fee rule (``fee_terms``), one for every book:
  * a fee in the symbol's quote currency is charged to cash as it is;
  * a fee in the symbol's base asset (Binance takes its fee from the asset received, e.g. BTC on a
    BTC/USDT buy) is base asset leaving the account: the position shrinks by the fee quantity, valued
    at the fill price (``fee * price`` is the fee in quote).  Booked as "the fee quantity disposed of at
    the fill price, the proceeds paid as a quote fee", so cash is untouched by it, the position matches
    what the venue holds for us (a later sell of the whole position is not refused for lack of balance)
    and the equity identity below still holds exactly;
  * a fee in any other currency (BNB, a rebate token) is refused with InvalidFillError: there is no
    rate here to convert it, and guessing one would put a wrong number in cash.

Conventions
  * Cash and prices are in the quote currency.
  * ``realized_pnl`` is gross trading P&L; fees are counted apart in ``fees_paid``.  So at any time
    ``equity() - starting cash == realized_pnl + unrealized_pnl() - fees_paid`` exactly.
  * A position keeps a signed cost basis (quantity x average price); reducing it realises the difference
    against the average cost, crossing through zero closes the old side and opens the rest at the fill price.
  * Unrealised P&L uses the last price seen for the symbol: the latest ``mark`` or fill, whichever came last.
  * Per-strategy figures keep a position per (symbol, strategy).  Their realised parts need not add up to
    the account's when strategies trade against each other, but realised + unrealised does.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext

from trading.records import Fill, Position, Side

_ZERO = Decimal(0)
PREC = 60  # enough digits that sums stay exact, so the equity identity holds to the last digit


class PortfolioError(ValueError):
    """Bad input to the portfolio."""


class WrongAccountError(PortfolioError):
    pass


class InvalidFillError(PortfolioError):
    pass


def fee_terms(fill: Fill) -> tuple[Decimal, Decimal]:
    """``(fee in the quote currency, base asset taken as fee)`` of a fill, by the module's fee rule.

    Raises InvalidFillError for a fee in a currency that is neither the symbol's base nor its quote."""
    fee = fill.fee
    if not fee:
        return _ZERO, _ZERO
    parts = fill.symbol.split("/")
    if len(parts) == 2:
        if fill.fee_currency == parts[1]:
            return fee, _ZERO
        if fill.fee_currency == parts[0]:
            return fee * fill.price, fee
    raise InvalidFillError(f"fill {fill.fill_id}: fee currency {fill.fee_currency!r} is neither the quote nor "
                           f"the base currency of {fill.symbol!r} (no rate to convert it)")


@dataclass(slots=True)
class Holding:
    """One position at average cost: quantity, signed cost basis, realised P&L (gross), fees (quote)."""

    qty: Decimal = _ZERO
    cost: Decimal = _ZERO  # signed cost basis, qty * average price
    realized: Decimal = _ZERO
    fees: Decimal = _ZERO

    def trade(self, d: Decimal, price: Decimal, fee: Decimal, fee_base: Decimal) -> None:
        """Book a signed quantity ``d`` traded at ``price`` with its ``fee_terms``; the caller holds a
        Decimal context of ``PREC`` digits (exact sums)."""
        self.apply(d, price, fee)
        if fee_base:  # the base asset paid as fee leaves the position at the fill price
            self.apply(-fee_base, price, _ZERO)

    @property
    def avg_price(self) -> Decimal:
        return self.cost / self.qty if self.qty else _ZERO

    def apply(self, d: Decimal, price: Decimal, fee: Decimal) -> None:
        """Apply a signed quantity ``d`` traded at ``price``."""
        self.fees += fee
        q = self.qty
        if q == 0 or (q > 0) == (d > 0):
            self.qty = q + d
            self.cost += d * price
            return
        closing = min(abs(d), abs(q))
        removed = self.cost if closing == abs(q) else self.cost * closing / abs(q)
        self.realized += (closing * price if q > 0 else -closing * price) - removed
        self.cost -= removed
        self.qty = q + d
        if abs(d) > abs(q):  # flipped through zero: the rest opens at the fill price
            self.cost = self.qty * price

    def unrealized(self, mark: Decimal | None) -> Decimal:
        return _ZERO if self.qty == 0 or mark is None else self.qty * mark - self.cost

    def to_list(self) -> list[str]:
        return [str(self.qty), str(self.cost), str(self.realized), str(self.fees)]

    @classmethod
    def from_list(cls, v: list[str]) -> "Holding":
        return cls(*(Decimal(x) for x in v))


def _valid_decimal(x: object, positive: bool) -> bool:
    return isinstance(x, Decimal) and x.is_finite() and (x > 0 if positive else x == x)


DEDUP_WINDOW = 100_000


class Portfolio:
    """Cash and positions of ONE account, with P&L attribution per strategy.

    Duplicate fills: the ids of the last ``dedup_window`` distinct fills applied are remembered, and a
    fill whose id is among them is ignored (counted in ``duplicate_fills``).  A redelivered or replayed
    fill arrives within a few fills of the original, far inside the window; the window keeps memory
    constant in a process that runs for months.  The system of record (one row per fill id) is what
    guarantees uniqueness over all time.
    """

    def __init__(self, account: str, cash: Decimal, currency: str | None = None,
                 dedup_window: int = DEDUP_WINDOW) -> None:
        if dedup_window < 1:
            raise PortfolioError(f"dedup_window must be >= 1, got {dedup_window}")
        if not _valid_decimal(cash, positive=False):
            raise PortfolioError(f"cash must be a finite Decimal, got {cash!r}")
        self.account = account
        self.currency = currency  # when set, fills in another quote currency are refused
        self.initial_cash = cash
        self._cash = cash
        self._holdings: dict[str, Holding] = {}
        self._by_strategy: dict[tuple[str, str], Holding] = {}
        self._marks: dict[str, Decimal] = {}
        self.dedup_window = dedup_window
        self._fill_ids: dict[str, None] = {}  # an insertion-ordered set: the last dedup_window fill ids
        self.duplicate_fills = 0  # fills applied twice (ignored), counted

    # ------------------------------------------------------------------ updates

    def apply_fill(self, fill: Fill) -> None:
        if fill.account != self.account:
            raise WrongAccountError(f"fill {fill.fill_id} is for account {fill.account!r}, this portfolio is {self.account!r}")
        if fill.fill_id in self._fill_ids:
            self.duplicate_fills += 1
            return
        if not _valid_decimal(fill.quantity, positive=True):
            raise InvalidFillError(f"fill {fill.fill_id}: quantity {fill.quantity!r} must be a finite Decimal > 0")
        if not _valid_decimal(fill.price, positive=True):
            raise InvalidFillError(f"fill {fill.fill_id}: price {fill.price!r} must be a finite Decimal > 0")
        if not _valid_decimal(fill.fee, positive=False):
            raise InvalidFillError(f"fill {fill.fill_id}: fee {fill.fee!r} must be a finite Decimal")
        if self.currency is not None and fill.symbol.partition("/")[2] != self.currency:
            raise InvalidFillError(f"fill {fill.fill_id}: {fill.symbol!r} is not quoted in the portfolio currency {self.currency!r}")
        d = fill.quantity if fill.side is Side.BUY else -fill.quantity
        with localcontext() as ctx:
            ctx.prec = PREC
            fee, fee_base = fee_terms(fill)  # refuses a fee it cannot convert, before any change
            self._cash -= d * fill.price + fee - fee_base * fill.price
            # get-or-create rather than setdefault(key, Holding()): setdefault built a throw-away
            # Holding on every fill of the live hot path
            h = self._holdings.get(fill.symbol)
            if h is None:
                h = self._holdings[fill.symbol] = Holding()
            h.trade(d, fill.price, fee, fee_base)
            key = (fill.symbol, fill.strategy)
            h = self._by_strategy.get(key)
            if h is None:
                h = self._by_strategy[key] = Holding()
            h.trade(d, fill.price, fee, fee_base)
        self._marks[fill.symbol] = fill.price
        ids = self._fill_ids
        ids[fill.fill_id] = None
        if len(ids) > self.dedup_window:
            del ids[next(iter(ids))]  # the oldest: dicts keep insertion order

    def mark(self, symbol: str, price: Decimal) -> None:
        if not _valid_decimal(price, positive=True):
            raise PortfolioError(f"mark price for {symbol!r} must be a finite Decimal > 0, got {price!r}")
        self._marks[symbol] = price

    # ------------------------------------------------------------------ queries

    @property
    def cash(self) -> Decimal:
        return self._cash

    @property
    def realized_pnl(self) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = PREC
            return sum((h.realized for h in self._holdings.values()), _ZERO)

    @property
    def fees_paid(self) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = PREC
            return sum((h.fees for h in self._holdings.values()), _ZERO)

    def unrealized_pnl(self, symbol: str | None = None) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = PREC
            if symbol is not None:
                h = self._holdings.get(symbol)
                return _ZERO if h is None else h.unrealized(self._marks.get(symbol))
            return sum((h.unrealized(self._marks.get(s)) for s, h in self._holdings.items()), _ZERO)

    def equity(self) -> Decimal:
        """Cash plus positions valued at their last price."""
        with localcontext() as ctx:
            ctx.prec = PREC
            return self._cash + sum((h.qty * self._marks[s] for s, h in self._holdings.items() if h.qty), _ZERO)

    def position(self, symbol: str, strategy: str | None = None) -> Position:
        """The account's position in ``symbol`` (or only the part traded by ``strategy``)."""
        h = self._holdings.get(symbol) if strategy is None else self._by_strategy.get((symbol, strategy))
        return self._record(symbol, strategy or "", h or Holding())

    def positions(self) -> dict[str, Position]:
        """Every symbol ever traded (flat ones included, they carry realised P&L)."""
        return {s: self._record(s, "", h) for s, h in self._holdings.items()}

    def strategies(self) -> list[str]:
        return sorted({s for _, s in self._by_strategy})

    def strategy_pnl(self, strategy: str) -> dict[str, Decimal]:
        """realized, unrealized, fees and net (= realized + unrealized - fees) of one strategy."""
        with localcontext() as ctx:
            ctx.prec = PREC
            hs = [(sym, h) for (sym, s), h in self._by_strategy.items() if s == strategy]
            realized = sum((h.realized for _, h in hs), _ZERO)
            unrealized = sum((h.unrealized(self._marks.get(sym)) for sym, h in hs), _ZERO)
            fees = sum((h.fees for _, h in hs), _ZERO)
            return {"realized": realized, "unrealized": unrealized, "fees": fees, "net": realized + unrealized - fees}

    def _record(self, symbol: str, strategy: str, h: Holding) -> Position:
        avg = h.avg_price
        mark = self._marks.get(symbol)
        return Position(self.account, symbol, strategy, h.qty, avg, h.realized, h.fees,
                        {"mark": mark, "unrealized_pnl": h.unrealized(mark), "cost_basis": h.cost})

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> dict:
        """JSON-friendly state (Decimals as strings) that ``restore`` reads back exactly."""
        return {
            "account": self.account,
            "currency": self.currency,
            "initial_cash": str(self.initial_cash),
            "cash": str(self._cash),
            "holdings": {s: h.to_list() for s, h in self._holdings.items()},
            "by_strategy": [[sym, strat, *h.to_list()] for (sym, strat), h in self._by_strategy.items()],
            "marks": {s: str(p) for s, p in self._marks.items()},
            "fill_ids": list(self._fill_ids),  # oldest first
        }

    def restore(self, state: dict) -> None:
        if state.get("account") != self.account:
            raise WrongAccountError(f"snapshot is for account {state.get('account')!r}, this portfolio is {self.account!r}")
        self.currency = state["currency"]
        self.initial_cash = Decimal(state["initial_cash"])
        self._cash = Decimal(state["cash"])
        self._holdings = {s: Holding.from_list(v) for s, v in state["holdings"].items()}
        self._by_strategy = {(row[0], row[1]): Holding.from_list(row[2:]) for row in state["by_strategy"]}
        self._marks = {s: Decimal(p) for s, p in state["marks"].items()}
        self._fill_ids = dict.fromkeys(state["fill_ids"][-self.dedup_window:])
