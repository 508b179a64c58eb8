"""The target-weights record: what the optimiser decided, with its inputs and the solver's status, and
the bridge to the rebalancing strategy (``trading.strategies.rebalance.Rebalance``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from trading.portfolio.errors import PortfolioError
from trading.records import stable_id


@dataclass(frozen=True)
class TargetWeights:
    portfolio: str
    as_of: str  # ISO date (or datetime) the weights apply from
    weights: Mapping[str, float]
    model: str
    estimator: str
    solver_status: str
    solver: str = ""
    solve_time_s: float = 0.0
    expected_return: float = math.nan
    expected_vol: float = math.nan
    inputs: Mapping[str, Any] = field(default_factory=dict)  # constraints, lookback, risk aversion, ...

    @property
    def id(self) -> str:
        return stable_id("target_weights", self.portfolio, self.as_of)


def rebalance_weights(record: TargetWeights, min_weight: float = 0.0) -> dict[str, float]:
    """The ``weights`` dict ``Rebalance`` takes. Weights with |w| <= ``min_weight`` are left out, so
    Rebalance closes those positions (it closes held symbols missing from its weights)."""
    out = {}
    for sym, w in record.weights.items():
        w = float(w)
        if not math.isfinite(w):
            raise PortfolioError(f"target weight of {sym!r} is not finite: {w}")
        if abs(w) > min_weight:
            out[sym] = w
    return out
