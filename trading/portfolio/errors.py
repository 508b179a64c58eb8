"""Errors of the portfolio package: each names the problem, none is a silent fallback."""

from __future__ import annotations


class PortfolioError(ValueError):
    """Base class: bad input or an optimisation that cannot give a trustworthy answer."""


class InsufficientDataError(PortfolioError):
    """Too little history (or NaNs in it) to estimate what the model needs."""


class ConstraintError(PortfolioError):
    """A constraint specification that is inconsistent with itself or with the symbols."""


class ModelError(PortfolioError):
    """An unknown model/estimator name or a parameter outside its valid range."""


class InfeasibleError(PortfolioError):
    """No portfolio satisfies the constraints.

    ``binding`` lists the constraint groups whose removal (one at a time) makes the problem feasible;
    when no single group does, it lists every active group (they conflict jointly) and ``jointly`` is True.
    """

    def __init__(self, binding: list[str], status: str, jointly: bool = False, detail: str = "") -> None:
        self.binding = binding
        self.status = status
        self.jointly = jointly
        what = "jointly, no single group" if jointly else "relaxing any one of these makes it feasible"
        msg = f"portfolio problem is {status}: binding constraint(s) {binding} ({what})"
        super().__init__(msg + (f"; {detail}" if detail else ""))


class SolverError(PortfolioError):
    """The solver failed for a reason other than infeasibility (numerical trouble, unbounded objective)."""

    def __init__(self, status: str, detail: str = "") -> None:
        self.status = status
        super().__init__(f"solver status {status!r}" + (f": {detail}" if detail else ""))


class TaxLotError(PortfolioError):
    """Selling more than is held, non-positive quantities or prices, dates out of order."""
