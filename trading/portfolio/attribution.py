"""Performance attribution: where a book's P&L came from (per strategy, per asset) and how much of its
return the market explains (beta and alpha against a benchmark).

Contributions are additive: each part's P&L over the book's starting capital, so the parts sum to the
book's simple total return (P&L / capital), and each part's share of the total P&L.  Beta and alpha are
the ordinary least-squares fit r_t = alpha + beta * b_t + e_t on the same periods' simple returns; alpha
is reported per period and annualised simply (alpha * periods_per_year), as Jensen's alpha with a risk-free
rate of 0 (trading/backtest/metrics.py's convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from trading.portfolio.errors import PortfolioError

MIN_PERIODS = 3  # a line through two points always fits: beta needs at least three


@dataclass(frozen=True)
class Contribution:
    name: str
    pnl: float
    contribution: float  # pnl / capital: the parts sum to the book's P&L over its capital
    share: float  # pnl / total pnl (nan when the total is 0)


def contributions(pnl: Mapping[str, float], capital: float) -> list[Contribution]:
    """Each part's P&L, its contribution to the book's return on ``capital`` and its share of the total,
    largest absolute P&L first."""
    if not (math.isfinite(capital) and capital > 0):
        raise PortfolioError(f"capital must be a finite number > 0, got {capital}")
    total = float(sum(pnl.values()))
    out = [Contribution(str(k), float(v), float(v) / capital, float(v) / total if total else math.nan)
           for k, v in pnl.items()]
    return sorted(out, key=lambda c: (-abs(c.pnl), c.name))


@dataclass(frozen=True)
class MarketFit:
    beta: float
    alpha: float  # per period
    alpha_annual: float
    correlation: float
    periods: int
    benchmark_return: float  # compounded over the periods fitted
    book_return: float

    def as_dict(self) -> dict[str, float | int]:
        return {"beta": self.beta, "alpha": self.alpha, "alpha_annual": self.alpha_annual,
                "correlation": self.correlation, "periods": self.periods,
                "benchmark_return": self.benchmark_return, "book_return": self.book_return}


def beta_alpha(returns, benchmark, periods_per_year: float = 365.0) -> MarketFit:
    """OLS of ``returns`` on ``benchmark`` (same periods, simple returns; NaN pairs are dropped)."""
    r, b = np.asarray(returns, dtype=float), np.asarray(benchmark, dtype=float)
    if r.shape != b.shape or r.ndim != 1:
        raise PortfolioError(f"returns and benchmark must be 1-d and of equal length, got {r.shape} and {b.shape}")
    keep = np.isfinite(r) & np.isfinite(b)
    r, b = r[keep], b[keep]
    if len(r) < MIN_PERIODS:
        raise PortfolioError(f"beta needs at least {MIN_PERIODS} periods with both returns, got {len(r)}")
    var_b = float(np.var(b))
    if var_b <= 0:
        raise PortfolioError("the benchmark did not move over these periods: beta is undefined")
    cov = float(np.mean((r - r.mean()) * (b - b.mean())))
    beta = cov / var_b
    alpha = float(r.mean() - beta * b.mean())
    sd_r = float(np.std(r))
    corr = cov / math.sqrt(var_b) / sd_r if sd_r > 0 else math.nan
    return MarketFit(beta, alpha, alpha * periods_per_year, corr, len(r),
                     float(np.prod(1 + b) - 1), float(np.prod(1 + r) - 1))


def equal_weight_returns(closes) -> np.ndarray:
    """Per-period returns of an equal-weight basket rebalanced every period, from a (periods x assets)
    close matrix: the mean of the assets' simple returns (an asset without both closes is left out of that
    period; a period without any is NaN).  One row fewer than ``closes``."""
    c = np.asarray(closes, dtype=float)
    if c.ndim != 2:
        raise PortfolioError(f"closes must be a (periods x assets) matrix, got shape {c.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = c[1:] / c[:-1] - 1.0
    r[~np.isfinite(r)] = np.nan
    out = np.full(r.shape[0], np.nan)
    counts = np.sum(np.isfinite(r), axis=1)
    out[counts > 0] = np.nansum(r[counts > 0], axis=1) / counts[counts > 0]
    return out
