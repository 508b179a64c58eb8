from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf

from trading.portfolio.covariance import (InsufficientDataError, estimate_cov, ewma_cov, ledoit_wolf,
                                          returns_from_prices, sample_cov)
from trading.portfolio.errors import ModelError


def test_sample_cov_is_numpy_unbiased():
    x = np.random.default_rng(1).normal(size=(50, 4))
    assert np.allclose(sample_cov(x), np.cov(x, rowvar=False, ddof=1))


@pytest.mark.parametrize("n,p", [(30, 5), (20, 40), (500, 10)])
def test_ledoit_wolf_matches_sklearn(n, p):
    x = np.random.default_rng(n + p).normal(size=(n, p)) @ np.random.default_rng(0).normal(size=(p, p))
    cov, shrink = ledoit_wolf(x)
    ref = LedoitWolf().fit(x)
    assert shrink == pytest.approx(ref.shrinkage_, rel=1e-9)
    assert np.allclose(cov, ref.covariance_, rtol=1e-9, atol=1e-12)


def test_ledoit_wolf_direct_formula_by_loops():
    # the paper's definitions, written with explicit loops over observations
    x = np.random.default_rng(5).normal(size=(12, 3))
    n, p = x.shape
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / n
    m = np.trace(s) / p
    d2 = np.linalg.norm(s - m * np.eye(p), "fro") ** 2 / p
    b2bar = sum(np.linalg.norm(np.outer(r, r) - s, "fro") ** 2 / p for r in xc) / n**2
    delta = min(b2bar, d2) / d2
    cov, shrink = ledoit_wolf(x)
    assert shrink == pytest.approx(delta)
    assert np.allclose(cov, (1 - delta) * s + delta * m * np.eye(p))


def test_ewma_weights_by_halflife():
    x = np.random.default_rng(2).normal(size=(40, 3))
    h = 10.0
    w = 0.5 ** (np.arange(39, -1, -1) / h)
    w /= w.sum()
    d = x - w @ x
    expected = sum(wi * np.outer(di, di) for wi, di in zip(w, d)) / (1 - np.sum(w**2))
    assert np.allclose(ewma_cov(x, h), expected)
    # a huge half-life is equal weighting: the sample covariance
    assert np.allclose(ewma_cov(x, 1e12), sample_cov(x))


def test_bad_input_errors_name_the_problem():
    x = np.random.default_rng(0).normal(size=(10, 3))
    x[4, 2] = np.nan
    with pytest.raises(InsufficientDataError, match=r"column\(s\) \[2\]"):
        sample_cov(x)
    with pytest.raises(InsufficientDataError, match="at least 2 return periods"):
        ledoit_wolf(np.ones((1, 3)))
    with pytest.raises(ModelError, match="unknown covariance estimator 'foo'"):
        estimate_cov(np.ones((5, 2)), "foo")
    with pytest.raises(ModelError, match="halflife"):
        ewma_cov(np.ones((5, 2)), 0)
    prices = np.array([[1.0, 2.0], [1.1, np.nan], [1.2, 2.1]])
    with pytest.raises(InsufficientDataError, match=r"\['B'\]"):
        returns_from_prices(prices, ["A", "B"])
    with pytest.raises(InsufficientDataError, match="at least 3 prices"):
        returns_from_prices(np.ones((2, 2)))
    assert np.allclose(returns_from_prices(np.array([[1.0], [1.1], [0.99]])).ravel(), [0.1, -0.1])
