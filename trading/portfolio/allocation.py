"""Target weights from a model name and its parameters: the one place that chooses between the optimisation
models (mean-variance family, Black-Litterman, Kelly, risk parity) and says which constraints each obeys."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from trading.portfolio.black_litterman import View, black_litterman
from trading.portfolio.constraints import Constraints, Costs
from trading.portfolio.covariance import estimate_cov, returns_from_prices
from trading.portfolio.errors import ModelError
from trading.portfolio.optimizer import MODELS, Solution, kelly, optimize
from trading.portfolio.risk_parity import risk_parity

ALL_MODELS = (*MODELS, "risk_parity", "black_litterman", "kelly")


@dataclass(frozen=True)
class AllocationSpec:
    """A model and everything it is parameterised by; returns and volatilities are annualised."""

    model: str = "min_variance"
    estimator: str = "ledoit_wolf"
    """Covariance: sample, ewma or ledoit_wolf."""
    ewma_halflife_days: float = 30.0
    periods_per_year: int = 365
    """Of the price rows (daily closes of a 24/7 market: 365)."""
    constraints: Constraints = field(default_factory=Constraints)
    risk_aversion: float = 2.5
    target: float | None = None
    """Annualised return (target_return) or volatility (target_risk)."""
    risk_free: float = 0.0
    views: Sequence[View] = ()
    tau: float = 0.05
    kelly_fraction: float = 0.5
    leverage_cap: float | None = None
    costs: Costs = field(default_factory=Costs)
    """Transaction costs in the objective on the trade from ``current`` (fee = the turnover penalty)."""

    def solved_constraints(self) -> Constraints:
        """The constraints the model's weights meet: Kelly sizes the net exposure itself (no budget) under its
        leverage cap; every other model meets the constraints as given."""
        if self.model == "kelly":
            return replace(self.constraints, budget=None, gross_leverage=self.leverage_cap)
        return self.constraints


def allocate(spec: AllocationSpec, symbols: Sequence[str], prices: np.ndarray,
             current: Mapping[str, float]) -> tuple[Solution, np.ndarray]:
    """(Solution, annualised expected returns used) of ``spec.model`` on a (rows x symbols) price matrix,
    turnover and minimum-trade terms measured against ``current`` weights."""
    if spec.model not in ALL_MODELS:
        raise ModelError(f"unknown model {spec.model!r}; use one of {ALL_MODELS}")
    returns = returns_from_prices(prices, symbols)
    cov = estimate_cov(returns, spec.estimator, spec.ewma_halflife_days) * spec.periods_per_year
    mu = returns.mean(axis=0) * spec.periods_per_year
    cons = spec.constraints
    if spec.model in MODELS:
        sol = optimize(spec.model, symbols, cov, mu, risk_aversion=spec.risk_aversion, target=spec.target,
                       risk_free=spec.risk_free, constraints=cons, current=current, costs=spec.costs)
    elif spec.model == "black_litterman":
        mu, cov_bl, _ = black_litterman(symbols, cov, list(spec.views), risk_aversion=spec.risk_aversion, tau=spec.tau)
        sol = optimize("mean_variance", symbols, cov_bl, mu, risk_aversion=spec.risk_aversion, constraints=cons,
                       current=current, costs=spec.costs)
    elif spec.model == "kelly":
        # Kelly sizes the net exposure itself: the budget does not apply, every other constraint does
        sol = kelly(symbols, cov, mu, fraction=spec.kelly_fraction, leverage_cap=spec.leverage_cap,
                    risk_free=spec.risk_free, constraints=replace(cons, budget=None), current=current,
                    costs=spec.costs)
    else:  # risk_parity
        extra = _risk_parity_extras(cons) + (["turnover_penalty"] if spec.costs.active else [])
        if extra:
            raise ModelError(f"risk_parity is long-only and takes no other constraints; remove {extra}")
        sol = risk_parity(symbols, cov, budget=cons.budget)
        sol = replace(sol, expected_return=float(mu @ sol.weights))
    return sol, np.asarray(mu)


def _risk_parity_extras(cons: Constraints) -> list[str]:
    """Constraints risk parity cannot honour, by Constraints field name."""
    extra = [k for k in ("lower", "upper", "gross_leverage", "turnover") if getattr(cons, k) is not None]
    extra += ["sector_caps"] if cons.sector_caps else []
    extra += ["min_trade"] if cons.min_trade else []
    return extra or ([] if cons.long_only else ["long_only"])
