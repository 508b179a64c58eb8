"""Virtual portfolio of one account: cash, positions at average cost, realised/unrealised P&L, fees.

The venue returns ``Fill`` records (those are the fill events); the caller applies each one here with
``apply_fill``.  Applying the same fill twice is a no-op (fill ids are deterministic), so replays are safe.

Conventions
  * Cash and prices are in the quote currency; fees are charged in it (a fill whose fee currency is not its
    symbol's quote currency is refused: there is no rate to convert it).
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
_PREC = 60  # enough digits that sums stay exact, so the equity identity holds to the last digit


class PortfolioError(ValueError):
    """Bad input to the portfolio."""


class WrongAccountError(PortfolioError):
    pass


class InvalidFillError(PortfolioError):
    pass


@dataclass(slots=True)
class _Holding:
    qty: Decimal = _ZERO
    cost: Decimal = _ZERO  # signed cost basis, qty * average price
    realized: Decimal = _ZERO
    fees: Decimal = _ZERO

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
    def from_list(cls, v: list[str]) -> "_Holding":
        return cls(*(Decimal(x) for x in v))


def _valid_decimal(x: object, positive: bool) -> bool:
    return isinstance(x, Decimal) and x.is_finite() and (x > 0 if positive else x == x)


class Portfolio:
    """Cash and positions of ONE account, with P&L attribution per strategy."""

    def __init__(self, account: str, cash: Decimal, currency: str | None = None) -> None:
        if not _valid_decimal(cash, positive=False):
            raise PortfolioError(f"cash must be a finite Decimal, got {cash!r}")
        self.account = account
        self.currency = currency  # when set, fills in another quote currency are refused
        self.initial_cash = cash
        self._cash = cash
        self._holdings: dict[str, _Holding] = {}
        self._by_strategy: dict[tuple[str, str], _Holding] = {}
        self._marks: dict[str, Decimal] = {}
        self._fill_ids: set[str] = set()
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
        parts = fill.symbol.split("/")
        quote = parts[1] if len(parts) == 2 else None
        if fill.fee != 0 and fill.fee_currency != quote:
            raise InvalidFillError(f"fill {fill.fill_id}: fee currency {fill.fee_currency!r} is not the quote currency of {fill.symbol!r}")
        if self.currency is not None and quote != self.currency:
            raise InvalidFillError(f"fill {fill.fill_id}: {fill.symbol!r} is not quoted in the portfolio currency {self.currency!r}")
        d = fill.quantity if fill.side is Side.BUY else -fill.quantity
        with localcontext() as ctx:
            ctx.prec = _PREC
            self._cash -= d * fill.price + fill.fee
            # get-or-create rather than setdefault(key, _Holding()): setdefault built a throw-away
            # _Holding on every fill of the live hot path
            h = self._holdings.get(fill.symbol)
            if h is None:
                h = self._holdings[fill.symbol] = _Holding()
            h.apply(d, fill.price, fill.fee)
            key = (fill.symbol, fill.strategy)
            h = self._by_strategy.get(key)
            if h is None:
                h = self._by_strategy[key] = _Holding()
            h.apply(d, fill.price, fill.fee)
        self._marks[fill.symbol] = fill.price
        self._fill_ids.add(fill.fill_id)

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
            ctx.prec = _PREC
            return sum((h.realized for h in self._holdings.values()), _ZERO)

    @property
    def fees_paid(self) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = _PREC
            return sum((h.fees for h in self._holdings.values()), _ZERO)

    def unrealized_pnl(self, symbol: str | None = None) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = _PREC
            if symbol is not None:
                h = self._holdings.get(symbol)
                return _ZERO if h is None else h.unrealized(self._marks.get(symbol))
            return sum((h.unrealized(self._marks.get(s)) for s, h in self._holdings.items()), _ZERO)

    def equity(self) -> Decimal:
        """Cash plus positions valued at their last price."""
        with localcontext() as ctx:
            ctx.prec = _PREC
            return self._cash + sum((h.qty * self._marks[s] for s, h in self._holdings.items() if h.qty), _ZERO)

    def position(self, symbol: str, strategy: str | None = None) -> Position:
        """The account's position in ``symbol`` (or only the part traded by ``strategy``)."""
        h = self._holdings.get(symbol) if strategy is None else self._by_strategy.get((symbol, strategy))
        return self._record(symbol, strategy or "", h or _Holding())

    def positions(self) -> dict[str, Position]:
        """Every symbol ever traded (flat ones included, they carry realised P&L)."""
        return {s: self._record(s, "", h) for s, h in self._holdings.items()}

    def strategies(self) -> list[str]:
        return sorted({s for _, s in self._by_strategy})

    def strategy_pnl(self, strategy: str) -> dict[str, Decimal]:
        """realized, unrealized, fees and net (= realized + unrealized - fees) of one strategy."""
        with localcontext() as ctx:
            ctx.prec = _PREC
            hs = [(sym, h) for (sym, s), h in self._by_strategy.items() if s == strategy]
            realized = sum((h.realized for _, h in hs), _ZERO)
            unrealized = sum((h.unrealized(self._marks.get(sym)) for sym, h in hs), _ZERO)
            fees = sum((h.fees for _, h in hs), _ZERO)
            return {"realized": realized, "unrealized": unrealized, "fees": fees, "net": realized + unrealized - fees}

    def _record(self, symbol: str, strategy: str, h: _Holding) -> Position:
        avg = h.cost / h.qty if h.qty else _ZERO
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
            "fill_ids": sorted(self._fill_ids),
        }

    def restore(self, state: dict) -> None:
        if state.get("account") != self.account:
            raise WrongAccountError(f"snapshot is for account {state.get('account')!r}, this portfolio is {self.account!r}")
        self.currency = state["currency"]
        self.initial_cash = Decimal(state["initial_cash"])
        self._cash = Decimal(state["cash"])
        self._holdings = {s: _Holding.from_list(v) for s, v in state["holdings"].items()}
        self._by_strategy = {(row[0], row[1]): _Holding.from_list(row[2:]) for row in state["by_strategy"]}
        self._marks = {s: Decimal(p) for s, p in state["marks"].items()}
        self._fill_ids = set(state["fill_ids"])
