"""When and how far to rebalance: drift-band triggers, and transaction-cost-aware trading towards a target.

``trade_toward`` minimises tracking variance to the target plus trading costs,
(w - t)' S (w - t) + sum fee |dw| + sum impact |dw|^1.5 with dw = w - w_current, under the constraints:
a trade is made only where the risk it removes is worth its cost, which gives the no-trade band of
cost-aware rebalancing without hand-set thresholds.
"""

from __future__ import annotations

import time
from typing import Mapping, Sequence

import cvxpy as cp
import numpy as np

from trading.portfolio.constraints import Constraints, Costs
from trading.portfolio.errors import ModelError, SolverError
from trading.portfolio.optimizer import Solution, _diagnose, _Problem, _solve


def drift(current: Mapping[str, float], target: Mapping[str, float]) -> dict[str, float]:
    """current - target per symbol (absent = 0)."""
    return {s: float(current.get(s, 0.0)) - float(target.get(s, 0.0)) for s in sorted(set(current) | set(target))}


def breaches(current: Mapping[str, float], target: Mapping[str, float], band: float,
             relative: bool = False) -> list[str]:
    """Symbols whose drift exceeds ``band`` (absolute weight, or a fraction of the target if ``relative``)."""
    if not band >= 0:
        raise ModelError(f"drift band must be >= 0, got {band}")
    out = []
    for s, d in drift(current, target).items():
        limit = band * abs(float(target.get(s, 0.0))) if relative else band
        if abs(d) > limit:
            out.append(s)
    return out


def needs_rebalance(current: Mapping[str, float], target: Mapping[str, float], band: float,
                    relative: bool = False) -> bool:
    return bool(breaches(current, target, band, relative))


def trade_toward(symbols: Sequence[str], cov: np.ndarray, target: Mapping[str, float],
                 current: Mapping[str, float], costs: Costs, constraints: Constraints | None = None) -> Solution:
    """New weights between ``current`` and ``target`` that balance tracking risk against trading costs."""
    t0 = time.perf_counter()
    symbols = list(symbols)
    c = constraints or Constraints()
    c.validate(symbols)
    t = np.array([float(target.get(s, 0.0)) for s in symbols])
    w0 = np.array([float(current.get(s, 0.0)) for s in symbols])
    p = _Problem("min_variance", symbols, np.asarray(cov, dtype=float), None, c, w0, costs, 1.0, None, 0.0)
    x = cp.Variable(len(symbols))
    obj = cp.quad_form(x - t, cp.psd_wrap(p.cov)) + p._cost(x)
    prob = cp.Problem(cp.Minimize(obj), p._constraints(x, 1.0, set()))
    status = _solve(prob, cp.CLARABEL)
    if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or x.value is None:
        if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
            raise _diagnose(p, cp.CLARABEL, status)
        raise SolverError(status, "trade_toward did not solve")
    w = np.asarray(x.value, dtype=float)
    w[np.abs(w - w0) < 1e-7] = w0[np.abs(w - w0) < 1e-7]  # interior-point noise is not a trade
    return Solution(tuple(symbols), w, status, cp.CLARABEL, time.perf_counter() - t0, float("nan"),
                    float(np.sqrt(max(w @ p.cov @ w, 0.0))))
