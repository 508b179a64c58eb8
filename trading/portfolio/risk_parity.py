"""Risk parity (equal or budgeted risk contributions), long-only and fully invested.

Solved as the convex problem of Spinu (2013): minimise y'Sy/2 - sum_i b_i log y_i over y > 0; at the
optimum y_i (Sy)_i = b_i, so w = y / sum(y) has risk contributions proportional to the budgets b.
Other constraints do not apply (they would break the equal-contribution property).
"""

from __future__ import annotations

import time
from typing import Sequence

import cvxpy as cp
import numpy as np

from trading.portfolio.errors import ModelError, SolverError
from trading.portfolio.optimizer import Solution, risk_factor


def risk_contributions(w: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Each asset's share of portfolio variance: w_i (Sw)_i / w'Sw (sums to 1)."""
    w = np.asarray(w, dtype=float)
    rc = w * (cov @ w)
    return rc / rc.sum()


def risk_parity(symbols: Sequence[str], cov: np.ndarray, budgets: Sequence[float] | None = None,
                budget: float = 1.0) -> Solution:
    t0 = time.perf_counter()
    n = len(symbols)
    cov = np.asarray(cov, dtype=float)
    if cov.shape != (n, n):
        raise ModelError(f"covariance must be {n}x{n}, got {cov.shape}")
    b = np.full(n, 1.0 / n) if budgets is None else np.asarray(budgets, dtype=float)
    if b.shape != (n,) or np.any(b <= 0):
        raise ModelError("risk budgets must be one positive number per asset")
    b = b / b.sum()
    if np.any(np.diag(cov) <= 0):
        raise ModelError("risk parity needs every asset to have positive variance")
    y = cp.Variable(n, pos=True)
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(risk_factor(cov) @ y) - b @ cp.log(y)))
    try:
        prob.solve(solver=cp.CLARABEL)
    except cp.SolverError as exc:
        raise SolverError("solver_error", str(exc)) from exc
    if prob.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or y.value is None:
        raise SolverError(prob.status, "risk parity did not solve")
    w = budget * np.asarray(y.value) / np.sum(y.value)
    return Solution(tuple(symbols), w, prob.status, cp.CLARABEL, time.perf_counter() - t0, float("nan"),
                    float(np.sqrt(w @ cov @ w)))
