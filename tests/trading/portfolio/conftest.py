"""Seeded data shared by the portfolio tests."""

from __future__ import annotations

import numpy as np
import pytest


def random_problem(n: int, seed: int = 0, periods: int = 400) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(symbols, returns, annualised covariance, annualised mean) from correlated seeded returns."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(0, 1, (n, n)) / np.sqrt(n) + np.eye(n)
    returns = rng.normal(0.0005, 0.01, (periods, n)) @ mix.T
    cov = np.cov(returns, rowvar=False) * 365
    mu = returns.mean(axis=0) * 365
    return [f"S{i}/USD" for i in range(n)], returns, cov, mu


@pytest.fixture
def problem6():
    return random_problem(6, seed=3)
