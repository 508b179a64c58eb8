"""Value at Risk and expected shortfall (CVaR): historical, parametric and Monte Carlo, vectorised.

Conventions: ``returns`` is a (T scenarios x N assets) matrix of simple 1-period (1-day) returns;
``exposures`` are signed notionals, shape (N,) for one portfolio or (N, K) for K portfolios at once
(the account and each strategy).  P&L is linear: ``pnl = returns @ exposures``.  VaR and CVaR are
reported as positive losses.  Horizon: historical VaR is scaled by sqrt(horizon) (i.i.d. returns
assumption); the parametric and Monte Carlo methods scale the mean by h and the covariance by h,
which for normal returns is the same sqrt-time rule applied to the volatility.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from trading.risk.errors import RiskDataError

METHODS = ("historical", "parametric", "monte_carlo")


@dataclass(frozen=True, slots=True)
class VarResult:
    method: str
    confidence: float
    horizon_days: float
    var: float  # loss not exceeded with probability `confidence`
    cvar: float  # mean loss beyond VaR (expected shortfall)


def _check(confidence: float, horizon: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise RiskDataError(f"confidence {confidence!r} must be in (0, 1)")
    if not horizon > 0.0:
        raise RiskDataError(f"horizon {horizon!r} must be > 0")


def portfolio_pnl(returns: np.ndarray, exposures: np.ndarray) -> np.ndarray:
    """Scenario P&L, (T,) or (T, K)."""
    if exposures.ndim == 1:
        return returns @ exposures
    # one matrix-vector product per portfolio: a threaded BLAS matrix-matrix product stalls for
    # milliseconds on a busy 2-core box (measured), the matrix-vector one stays single-threaded
    out = np.empty((returns.shape[0], exposures.shape[1]))
    for k in range(exposures.shape[1]):
        out[:, k] = returns @ exposures[:, k]
    return out


def historical_var_cvar(pnl: np.ndarray, confidence: float, horizon: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """VaR and CVaR of P&L samples (T,) or (T, K) along axis 0; VaR by linear interpolation
    between order statistics (numpy's default percentile), CVaR = mean of the losses >= VaR."""
    _check(confidence, horizon)
    losses = -np.asarray(pnl, dtype=float)
    n = losses.shape[0]
    if n == 0:
        raise RiskDataError("no scenarios")
    losses = np.sort(losses, axis=0)
    h = (n - 1) * confidence
    lo = int(np.floor(h))
    hi = min(lo + 1, n - 1)
    var = losses[lo] + (h - lo) * (losses[hi] - losses[lo])
    tail = losses >= var
    cvar = np.where(tail, losses, 0.0).sum(axis=0) / tail.sum(axis=0)
    scale = np.sqrt(horizon)
    return var * scale, cvar * scale


def parametric_var_cvar(mean: np.ndarray, std: np.ndarray, confidence: float,
                        horizon: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Normal (variance-covariance) VaR and CVaR of P&L with 1-period ``mean`` and ``std``."""
    _check(confidence, horizon)
    nd = NormalDist()
    z = nd.inv_cdf(confidence)
    mu = np.asarray(mean, dtype=float) * horizon
    sigma = np.asarray(std, dtype=float) * np.sqrt(horizon)
    var = z * sigma - mu
    cvar = sigma * nd.pdf(z) / (1.0 - confidence) - mu
    return var, cvar


def moments(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean (N,) and covariance (N, N) of the return scenarios."""
    r = np.asarray(returns, dtype=float)
    if r.shape[0] < 2:
        raise RiskDataError(f"need at least 2 scenarios for a covariance, got {r.shape[0]}")
    mean = r.mean(axis=0)
    centred = r - mean
    cov = centred.T @ centred / (r.shape[0] - 1)
    return mean, cov


def _psd_factor(cov: np.ndarray) -> np.ndarray:
    """A matrix A with A @ A.T == cov (eigen-decomposition: also works for a singular covariance)."""
    w, v = np.linalg.eigh(cov)
    return v * np.sqrt(np.clip(w, 0.0, None))


def monte_carlo_pnl(returns: np.ndarray, exposures: np.ndarray, simulations: int, seed: int,
                    horizon: float = 1.0) -> np.ndarray:
    """Simulated horizon P&L (S,) or (S, K) from a multivariate normal fitted to the scenarios."""
    mean, cov = moments(returns)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((simulations, mean.shape[0]))
    sim = mean * horizon + (z @ _psd_factor(cov).T) * np.sqrt(horizon)
    return sim @ exposures


def var_cvar(returns: np.ndarray, exposures: np.ndarray, method: str = "historical", confidence: float = 0.99,
             horizon: float = 1.0, simulations: int = 10_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """VaR and CVaR of one (N,) or K (N, K) portfolios by ``method``."""
    returns = np.asarray(returns, dtype=float)
    exposures = np.asarray(exposures, dtype=float)
    if returns.ndim != 2 or returns.shape[1] != exposures.shape[0]:
        raise RiskDataError(f"returns shape {returns.shape} does not match exposures shape {exposures.shape}")
    if method == "historical":
        return historical_var_cvar(portfolio_pnl(returns, exposures), confidence, horizon)
    if method == "parametric":
        mean, cov = moments(returns)
        mu = mean @ exposures
        sd = np.sqrt(np.maximum(np.einsum("n...,nm,m...->...", exposures, cov, exposures), 0.0))
        return parametric_var_cvar(mu, sd, confidence, horizon)
    if method == "monte_carlo":
        # the horizon is already in the simulation, so no further scaling
        return historical_var_cvar(monte_carlo_pnl(returns, exposures, simulations, seed, horizon), confidence)
    raise RiskDataError(f"VaR method {method!r} unknown; expected one of {METHODS}")
