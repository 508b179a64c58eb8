"""Portfolio optimisation speed: 500 assets, long-only, sector caps and a turnover limit.

Prints wall times (cvxpy build + solve) for OSQP and Clarabel, the covariance estimators, and a whole
"daily optimisation" (estimate + optimise + min-trade post-step). Seeded synthetic returns.
Run: .venv/bin/python benchmarks/bench_portfolio.py
"""

from __future__ import annotations

import time

import numpy as np

from trading.portfolio.constraints import Constraints, Costs
from trading.portfolio.covariance import estimate_cov
from trading.portfolio.optimizer import optimize


def synthetic(n: int, periods: int, seed: int = 0) -> tuple[list[str], np.ndarray, dict[str, str]]:
    rng = np.random.default_rng(seed)
    factors = rng.normal(0, 0.01, (periods, 5))
    loadings = rng.normal(1, 0.3, (n, 5)) / 5
    returns = factors @ loadings.T + rng.normal(0, 0.015, (periods, n))
    symbols = [f"A{i:03d}/USD" for i in range(n)]
    sectors = {s: f"sector{i % 10}" for i, s in enumerate(symbols)}
    return symbols, returns, sectors


def timed(label: str, fn, repeat: int = 5):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    print(f"{label:<58} best {min(times) * 1000:8.1f} ms   median {sorted(times)[len(times) // 2] * 1000:8.1f} ms")
    return out


def main() -> None:
    n, periods = 500, 750
    symbols, returns, sectors = synthetic(n, periods)
    mu = returns.mean(axis=0) * 365
    current = {s: 1.0 / n for s in symbols}
    caps = {f"sector{i}": 0.12 for i in range(10)}
    cons = Constraints(long_only=True, upper=0.02, sector_map=sectors, sector_caps=caps, turnover=0.5)
    print(f"{n} assets, {periods} daily returns, long-only, upper 2%, 10 sector caps 12%, turnover <= 0.5")
    for est in ("sample", "ewma", "ledoit_wolf"):
        timed(f"covariance {est}", lambda: estimate_cov(returns, est))
    cov = estimate_cov(returns, "ledoit_wolf") * 365
    for solver in ("OSQP", "CLARABEL"):
        for model in ("min_variance", "mean_variance"):
            sol = timed(f"{model:<14} {solver:<9} (build + solve)", lambda: optimize(
                model, symbols, cov, mu, constraints=cons, current=current, risk_aversion=5.0, solver=solver))
            print(f"    status {sol.status}, sum {sol.weights.sum():.6f}, max w {sol.weights.max():.4f}, "
                  f"turnover {np.abs(sol.weights - 1 / n).sum():.4f}, vol {sol.expected_vol:.4f}")
    sol = timed("max_sharpe     auto (build + solve)", lambda: optimize(
        "max_sharpe", symbols, cov, mu, constraints=cons, current=current))
    print(f"    status {sol.status}, solver {sol.solver}")
    mt = Constraints(**{**cons.as_dict(), "min_trade": 0.001})
    sol = timed("daily: ledoit-wolf + mean_variance + min-trade post-step", lambda: optimize(
        "mean_variance", symbols, estimate_cov(returns, "ledoit_wolf") * 365, mu, constraints=mt,
        current=current, risk_aversion=5.0), repeat=1)
    print(f"    solves {sol.diagnostics['solves']}, frozen {len(sol.frozen)}, status {sol.status}")
    # the turnover penalty (setting portfolio_turnover_penalty): |w - w_current| terms in the objective
    for penalty in (0.0, 0.1, 0.5):
        sol = timed(f"mean_variance  CLARABEL turnover penalty {penalty}", lambda: optimize(
            "mean_variance", symbols, cov, mu, constraints=cons, current=current, risk_aversion=5.0,
            costs=Costs(fee=penalty)))
        print(f"    status {sol.status}, turnover {np.abs(sol.weights - 1 / n).sum():.4f}")


if __name__ == "__main__":
    main()
