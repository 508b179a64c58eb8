"""Mean-variance family (minimum variance, maximum Sharpe, mean-variance utility, target return, target
risk, efficient frontier) and Kelly, as convex programmes in cvxpy, with the constraints of
``constraints.Constraints``.

Infeasibility is diagnosed by re-solving with each active constraint group removed in turn: the groups
whose removal makes the problem feasible are named in the InfeasibleError, with the solver status.
Minimum trade size is a post-step: assets whose trade is below the minimum are frozen at their current
weight and the rest re-solved, until no small trade remains; every solution still satisfies all
constraints (or the re-solve raises InfeasibleError naming ``min_trade``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import cvxpy as cp
import numpy as np

from trading.portfolio.constraints import Constraints, Costs
from trading.portfolio.errors import ConstraintError, InfeasibleError, ModelError, SolverError

MODELS = ("min_variance", "max_sharpe", "mean_variance", "target_return", "target_risk")
_FEASIBLE = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)
_INFEASIBLE = (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE)


@dataclass(frozen=True)
class Solution:
    symbols: tuple[str, ...]
    weights: np.ndarray
    status: str
    solver: str
    solve_time_s: float  # wall time of everything: building, solving, min-trade re-solves
    expected_return: float  # per the mu given (nan when no mu)
    expected_vol: float
    frozen: tuple[str, ...] = ()  # assets held at current weight by the min-trade post-step
    diagnostics: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {s: float(w) for s, w in zip(self.symbols, self.weights)}


def risk_factor(cov: np.ndarray) -> np.ndarray:
    """F with F'F = cov, so w'cov w = ||F w||^2: a sparse-friendly form for the solvers (and PSD-safe)."""
    cov = np.asarray(cov, dtype=float)
    try:
        return np.linalg.cholesky(cov).T
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
        if vals.min() < -1e-8 * max(1.0, abs(vals.max())):
            raise ModelError(f"covariance is not positive semi-definite (smallest eigenvalue {vals.min():.3g})") from None
        return (vecs * np.sqrt(np.clip(vals, 0, None))).T


class _Problem:
    """The data of one optimisation; ``build(omit)`` makes a cvxpy problem without the named groups."""

    def __init__(self, model: str, symbols: Sequence[str], cov: np.ndarray, mu: np.ndarray | None,
                 constraints: Constraints, current: np.ndarray, costs: Costs, risk_aversion: float,
                 target: float | None, risk_free: float) -> None:
        self.model, self.symbols, self.mu, self.c = model, list(symbols), mu, constraints
        self.cov = cov
        self.F = risk_factor(cov)
        self.current, self.costs = current, costs
        self.risk_aversion, self.target, self.risk_free = risk_aversion, target, risk_free
        self.lo, self.hi = constraints.bounds(symbols)
        self.frozen = np.zeros(len(symbols), dtype=bool)

    def groups(self) -> list[str]:
        c, out = self.c, []
        if np.any(np.isfinite(self.lo)) or np.any(np.isfinite(self.hi)):
            out.append("bounds")
        if c.budget is not None:
            out.append("budget")
        if c.net_range is not None:
            out.append("net_leverage")
        if c.gross_leverage is not None:
            out.append("gross_leverage")
        if c.sector_caps:
            out.append("sector_caps")
        if c.turnover is not None:
            out.append("turnover")
        if self.model in ("target_return", "target_risk"):
            out.append(self.model)
        if self.frozen.any():
            out.append("min_trade")
        return out

    def _constraints(self, x: cp.Variable, s, omit: set[str]) -> list:
        """Constraints on x scaled by s: s = 1 normally, s = kappa in the homogenised max-Sharpe form."""
        c, out = self.c, []
        if "bounds" not in omit:
            lo_i, hi_i = np.isfinite(self.lo), np.isfinite(self.hi)
            if lo_i.any():
                out.append(x[lo_i] >= self.lo[lo_i] * s)
            if hi_i.any():
                out.append(x[hi_i] <= self.hi[hi_i] * s)
        if c.budget is not None and "budget" not in omit:
            out.append(cp.sum(x) == c.budget * s)
        if c.net_range is not None and "net_leverage" not in omit:
            out += [cp.sum(x) >= c.net_range[0] * s, cp.sum(x) <= c.net_range[1] * s]
        if c.gross_leverage is not None and "gross_leverage" not in omit:
            out.append(cp.norm1(x) <= c.gross_leverage * s)
        if c.sector_caps and "sector_caps" not in omit:
            # one sector-by-asset membership matrix: one constraint row per sector, built once
            sectors = sorted(c.sector_caps)
            row = {sec: i for i, sec in enumerate(sectors)}
            member = np.zeros((len(sectors), len(self.symbols)))
            for j, sym in enumerate(self.symbols):
                if c.sector_map[sym] in row:
                    member[row[c.sector_map[sym]], j] = 1.0
            out.append(member @ x <= np.array([c.sector_caps[sec] for sec in sectors]) * s)
        if c.turnover is not None and "turnover" not in omit:
            out.append(cp.norm1(x - self.current * s) <= c.turnover * s)
        if self.frozen.any() and "min_trade" not in omit:
            out.append(x[self.frozen] == self.current[self.frozen] * s)
        return out

    def _cost(self, w: cp.Variable):
        if not self.costs.active:
            return 0.0
        fee, impact = self.costs.arrays(len(self.symbols))
        dw = cp.abs(w - self.current)
        expr = fee @ dw
        if np.any(impact > 0):
            expr = expr + impact @ cp.power(dw, 1.5)
        return expr

    def build(self, omit: set[str]) -> tuple[cp.Problem, cp.Variable, cp.Variable | None]:
        n = len(self.symbols)
        x = cp.Variable(n, name="w")
        # quad_form on the (checked PSD) covariance compiles faster than ||F x||^2 (measured: ~40 vs ~80 ms
        # at 500 assets) and hands OSQP/Clarabel the matrix directly
        risk = cp.quad_form(x, cp.psd_wrap(self.cov))
        if self.model == "max_sharpe":
            # Homogenised form (Cornuejols & Tutuncu): w = y / kappa, maximise Sharpe = minimise y'Sy
            # with (mu - rf)'y = 1; every constraint above is linear-homogeneous in (y, kappa).
            kappa = cp.Variable(nonneg=True, name="kappa")
            cons = self._constraints(x, kappa, omit) + [(self.mu - self.risk_free) @ x == 1]
            return cp.Problem(cp.Minimize(risk), cons), x, kappa
        cons = self._constraints(x, 1.0, omit)
        cost = self._cost(x)
        if self.model == "min_variance":
            obj = cp.Minimize(risk + cost)
        elif self.model == "mean_variance":
            obj = cp.Maximize(self.mu @ x - self.risk_aversion / 2 * risk - cost)
        elif self.model == "target_return":
            obj = cp.Minimize(risk + cost)
            if "target_return" not in omit:
                cons.append(self.mu @ x >= self.target)
        elif self.model == "target_risk":
            obj = cp.Maximize(self.mu @ x - cost)
            if "target_risk" not in omit:
                cons.append(cp.norm(self.F @ x, 2) <= self.target)
        elif self.model == "max_return":
            obj = cp.Maximize(self.mu @ x)
        else:
            raise ModelError(f"unknown model {self.model!r}; use one of {MODELS}")
        return cp.Problem(obj, cons), x, None


def _pick_solver(problem: cp.Problem, solver: str | None) -> str:
    if solver is not None:
        return solver
    # Clarabel (interior point) by default: at 500 assets it was as fast as OSQP on minimum variance and
    # faster and steadier on mean-variance / max-Sharpe, where OSQP's iteration count grew (bench_portfolio.py);
    # it also takes the cones (target risk, 3/2-power impact). OSQP stays available by name.
    return cp.CLARABEL


def _solve(problem: cp.Problem, solver: str) -> str:
    kwargs = {"eps_abs": 1e-8, "eps_rel": 1e-8, "max_iter": 200_000, "polishing": True} if solver == cp.OSQP else {}
    try:
        problem.solve(solver=solver, **kwargs)
    except cp.SolverError as exc:
        raise SolverError("solver_error", f"{solver}: {exc}") from exc
    return problem.status


def _diagnose(p: _Problem, solver: str | None, status: str) -> InfeasibleError:
    groups = p.groups()
    binding = []
    for g in groups:
        prob, _, _ = p.build({g})
        st = _solve(prob, _pick_solver(prob, solver))
        if st not in _INFEASIBLE:  # optimal or unbounded: a feasible point exists without g
            binding.append(g)
    if binding:
        return InfeasibleError(binding, status)
    return InfeasibleError(groups, status, jointly=True)


def _run(p: _Problem, solver: str | None) -> tuple[np.ndarray, str, str]:
    prob, x, kappa = p.build(set())
    name = _pick_solver(prob, solver)
    status = _solve(prob, name)
    if status in _INFEASIBLE:
        if p.model == "max_sharpe":
            # (mu - rf)'y = 1 is infeasible when no admissible portfolio beats the risk-free rate
            relaxed = _Problem("mean_variance", p.symbols, p.cov, p.mu, p.c, p.current, Costs(), 1.0, None, p.risk_free)
            relaxed.frozen = p.frozen
            if _solve(relaxed.build(set())[0], name) in _FEASIBLE:
                raise InfeasibleError(["max_sharpe"], status, detail="no feasible portfolio has expected return "
                                      "above the risk-free rate; use min_variance or lower risk_free")
        raise _diagnose(p, solver, status)
    if status == cp.UNBOUNDED or status == cp.UNBOUNDED_INACCURATE:
        raise SolverError(status, f"{p.model} is unbounded: add bounds, a budget or leverage limits")
    if status not in _FEASIBLE or x.value is None:
        raise SolverError(status, f"{name} did not solve {p.model}")
    w = np.asarray(x.value, dtype=float)
    if kappa is not None:
        if kappa.value is None or kappa.value <= 1e-12:
            raise SolverError(status, "max_sharpe: degenerate scale (kappa ~ 0)")
        w = w / float(kappa.value)
    w[np.abs(w) < 1e-10] = 0.0  # solver noise; well inside every tolerance
    return w, status, name


def optimize(model: str, symbols: Sequence[str], cov: np.ndarray, mu: np.ndarray | None = None, *,
             constraints: Constraints | None = None, current: Mapping[str, float] | None = None,
             costs: Costs | None = None, risk_aversion: float = 1.0, target: float | None = None,
             risk_free: float = 0.0, solver: str | None = None) -> Solution:
    """Optimal weights of ``model`` (one of MODELS) for covariance ``cov`` and expected returns ``mu``.

    ``current`` weights (default all zero) anchor turnover, min-trade and transaction costs; ``target`` is
    the required return (target_return) or the maximum volatility (target_risk), in mu/cov units.
    """
    t0 = time.perf_counter()
    symbols = list(symbols)
    n = len(symbols)
    c = constraints or Constraints()
    c.validate(symbols)
    cov = np.asarray(cov, dtype=float)
    if cov.shape != (n, n) or not np.all(np.isfinite(cov)):
        raise ModelError(f"covariance must be a finite {n}x{n} matrix, got shape {cov.shape}")
    if model not in MODELS and model != "max_return":
        raise ModelError(f"unknown model {model!r}; use one of {MODELS}")
    if model != "min_variance":
        if mu is None:
            raise ModelError(f"{model} needs expected returns mu")
        mu = np.asarray(mu, dtype=float)
        if mu.shape != (n,) or not np.all(np.isfinite(mu)):
            raise ModelError(f"mu must be {n} finite numbers, got shape {mu.shape}")
    if model in ("target_return", "target_risk") and (target is None or not math.isfinite(target)):
        raise ModelError(f"{model} needs a finite target")
    if model == "target_risk" and target < 0:
        raise ModelError(f"target_risk needs a volatility >= 0, got {target}")
    if not risk_aversion > 0:
        raise ModelError(f"risk_aversion must be > 0, got {risk_aversion}")
    costs = costs or Costs()
    if model == "max_sharpe" and costs.active:
        raise ModelError("max_sharpe does not take transaction costs (the ratio is not convex with them); "
                         "use mean_variance or target_risk")
    cur = current or {}
    unknown = sorted(set(cur) - set(symbols))
    if unknown:
        raise ConstraintError(f"current weights given for unknown symbol(s) {unknown}")
    w0 = np.array([float(cur.get(s, 0.0)) for s in symbols])

    p = _Problem(model, symbols, cov, mu, c, w0, costs, risk_aversion, target, risk_free)
    w, status, name = _run(p, solver)
    solves = 1
    if c.min_trade > 0:
        while True:
            dw = np.abs(w - w0)
            small = (dw > 1e-9) & (dw < c.min_trade) & ~p.frozen
            if not small.any():
                break
            p.frozen |= small  # freeze and re-solve: the rest re-balances around them within constraints
            w, status, name = _run(p, solver)
            solves += 1
    w[p.frozen] = w0[p.frozen]  # exactly, not to solver tolerance
    ret = float(mu @ w) if mu is not None else math.nan
    vol = float(math.sqrt(max(w @ cov @ w, 0.0)))
    return Solution(tuple(symbols), w, status, name, time.perf_counter() - t0, ret, vol,
                    tuple(s for s, f in zip(symbols, p.frozen) if f), {"solves": solves})


def efficient_frontier(symbols: Sequence[str], cov: np.ndarray, mu: np.ndarray, points: int = 20, *,
                       constraints: Constraints | None = None, solver: str | None = None) -> list[Solution]:
    """``points`` portfolios from the minimum-variance one to the maximum-return one, by target return."""
    if points < 2:
        raise ModelError(f"an efficient frontier needs at least 2 points, got {points}")
    lo = optimize("min_variance", symbols, cov, mu, constraints=constraints, solver=solver)
    hi = optimize("max_return", symbols, cov, mu, constraints=constraints, solver=solver)
    out = [lo]
    for r in np.linspace(lo.expected_return, hi.expected_return, points)[1:]:
        # a hair under the maximum, so that solver tolerance cannot make the last point infeasible
        out.append(optimize("target_return", symbols, cov, mu, constraints=constraints,
                            target=float(r) - 1e-9 * max(1.0, abs(r)), solver=solver))
    return out


def kelly(symbols: Sequence[str], cov: np.ndarray, mu: np.ndarray, *, fraction: float = 1.0,
          leverage_cap: float | None = None, risk_free: float = 0.0, long_only: bool = False,
          constraints: Constraints | None = None, solver: str | None = None,
          current: Mapping[str, float] | None = None, costs: Costs | None = None) -> Solution:
    """Multi-asset (fractional) Kelly: maximise the growth approximation (mu - rf)'w - w'Sw / (2 f).

    Unconstrained this is f * inv(S)(mu - rf); with ``leverage_cap`` the gross exposure sum |w| is capped
    (the optimum is re-solved under the cap, not scaled down, which is what growth-optimal means there).
    """
    if not 0 < fraction <= 1:
        raise ModelError(f"Kelly fraction must be in (0, 1], got {fraction}")
    if leverage_cap is not None and not leverage_cap > 0:
        raise ModelError(f"leverage_cap must be > 0, got {leverage_cap}")
    base = constraints or Constraints(long_only=long_only, budget=None)
    c = Constraints(**{**base.as_dict(), "gross_leverage": leverage_cap if leverage_cap is not None else base.gross_leverage})
    excess = np.asarray(mu, dtype=float) - risk_free
    return optimize("mean_variance", symbols, cov, excess, constraints=c, risk_aversion=1.0 / fraction, solver=solver,
                    current=current, costs=costs)
