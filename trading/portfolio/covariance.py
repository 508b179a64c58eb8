"""Covariance estimators on a (periods x assets) matrix of returns: sample, exponentially weighted and
Ledoit-Wolf shrinkage towards a scaled identity.

All return per-period covariances; annualise by multiplying with the periods per year.  Ledoit-Wolf is
written out here (Ledoit & Wolf 2004, "A well-conditioned estimator for large-dimensional covariance
matrices") because ``trading/`` must not depend on scikit-learn.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from trading.portfolio.errors import InsufficientDataError, ModelError

ESTIMATORS = ("sample", "ewma", "ledoit_wolf")


def returns_from_prices(prices: np.ndarray, symbols: Sequence[str] | None = None) -> np.ndarray:
    """Simple returns p[t]/p[t-1] - 1 of a (periods x assets) price matrix; NaN or non-positive prices are errors."""
    prices = np.asarray(prices, dtype=float)
    if prices.ndim != 2:
        raise InsufficientDataError(f"prices must be a 2-D (periods x assets) matrix, got shape {prices.shape}")
    names = list(symbols) if symbols is not None else [str(i) for i in range(prices.shape[1])]
    bad = [names[j] for j in range(prices.shape[1]) if not np.all(np.isfinite(prices[:, j]) & (prices[:, j] > 0))]
    if bad:
        raise InsufficientDataError(f"prices of {bad} contain NaN, infinite or non-positive values")
    if prices.shape[0] < 3:
        raise InsufficientDataError(f"need at least 3 prices (2 returns) per asset, got {prices.shape[0]}")
    return prices[1:] / prices[:-1] - 1.0


def _check(returns: np.ndarray, min_periods: int = 2) -> np.ndarray:
    x = np.asarray(returns, dtype=float)
    if x.ndim != 2 or x.shape[1] == 0:
        raise InsufficientDataError(f"returns must be a 2-D (periods x assets) matrix, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        cols = sorted({int(j) for j in np.argwhere(~np.isfinite(x))[:, 1]})
        raise InsufficientDataError(f"returns contain NaN/inf in asset column(s) {cols}")
    if x.shape[0] < min_periods:
        raise InsufficientDataError(f"need at least {min_periods} return periods, got {x.shape[0]}")
    return x


def sample_cov(returns: np.ndarray) -> np.ndarray:
    """Unbiased sample covariance (divides by n - 1)."""
    x = _check(returns)
    return np.atleast_2d(np.cov(x, rowvar=False, ddof=1))


def ewma_cov(returns: np.ndarray, halflife: float) -> np.ndarray:
    """Exponentially weighted covariance: the newest period has weight 1, one half-life back 1/2."""
    if not halflife > 0:
        raise ModelError(f"ewma halflife must be > 0 periods, got {halflife}")
    x = _check(returns)
    n = x.shape[0]
    w = 0.5 ** (np.arange(n - 1, -1, -1) / halflife)
    w /= w.sum()
    d = x - w @ x
    # bias correction for weighted samples (reduces to n/(n-1) for equal weights)
    return (d * w[:, None]).T @ d / (1.0 - np.sum(w * w))


def ledoit_wolf(returns: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrinkage of the (biased, 1/n) sample covariance towards mu*I, mu = trace/p.

    Returns (covariance, shrinkage intensity in [0, 1]).
    """
    x = _check(returns)
    n, p = x.shape
    x = x - x.mean(axis=0)
    s = x.T @ x / n
    mu = np.trace(s) / p
    d2 = np.sum((s - mu * np.eye(p)) ** 2) / p
    # sum_k ||x_k x_k' - S||_F^2 = sum_k ||x_k||^4 - n ||S||_F^2  (expanding the square)
    b2_bar = (np.sum(np.sum(x * x, axis=1) ** 2) - n * np.sum(s * s)) / (n * n) / p
    b2 = min(b2_bar, d2)
    shrinkage = 0.0 if d2 == 0 else b2 / d2
    return (1.0 - shrinkage) * s + shrinkage * mu * np.eye(p), float(shrinkage)


def estimate_cov(returns: np.ndarray, estimator: str = "ledoit_wolf", halflife: float = 30.0) -> np.ndarray:
    """Covariance by estimator name (one of ESTIMATORS)."""
    if estimator == "sample":
        return sample_cov(returns)
    if estimator == "ewma":
        return ewma_cov(returns, halflife)
    if estimator == "ledoit_wolf":
        return ledoit_wolf(returns)[0]
    raise ModelError(f"unknown covariance estimator {estimator!r}; use one of {ESTIMATORS}")
