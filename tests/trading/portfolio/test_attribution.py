"""Attribution with known numbers: beta/alpha of a series built with them, equal-weight benchmark returns,
additive contributions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trading.portfolio.attribution import beta_alpha, contributions, equal_weight_returns
from trading.portfolio.errors import PortfolioError


def test_a_series_built_with_beta_1_5_and_alpha_10bp_a_day_gives_them_back():
    rng = np.random.default_rng(3)
    market = rng.normal(0.0005, 0.02, 400)
    noise = rng.normal(0, 0.004, 400)
    noise -= market * (np.mean(noise * (market - market.mean())) / np.var(market))  # uncorrelated with the market
    noise -= noise.mean()  # and zero on average: the intercept is all alpha
    book = 0.001 + 1.5 * market + noise
    fit = beta_alpha(book, market)
    assert fit.beta == pytest.approx(1.5, abs=1e-12) and fit.alpha == pytest.approx(0.001, abs=1e-12)
    assert fit.alpha_annual == pytest.approx(0.365, abs=1e-9) and fit.periods == 400
    assert 0.9 < fit.correlation < 1.0
    exact = beta_alpha(0.001 + 1.5 * market, market)  # no noise: a perfect fit
    assert exact.correlation == pytest.approx(1.0)
    assert exact.book_return == pytest.approx(np.prod(1 + 0.001 + 1.5 * market) - 1)


def test_hand_computed_small_case_and_missing_days():
    # b = (1%, -1%, 2%, nan), r = (2%, -1%, 3%, 5%): the nan day is dropped
    fit = beta_alpha([0.02, -0.01, 0.03, 0.05], [0.01, -0.01, 0.02, math.nan], periods_per_year=365)
    # means: b 0.02/3, r 0.04/3; cov = mean((r-rm)(b-bm)); var(b) = mean((b-bm)^2)
    b, r = np.array([0.01, -0.01, 0.02]), np.array([0.02, -0.01, 0.03])
    beta = np.mean((r - r.mean()) * (b - b.mean())) / np.var(b)
    assert fit.beta == pytest.approx(beta) and fit.periods == 3
    assert fit.alpha == pytest.approx(r.mean() - beta * b.mean())
    assert fit.benchmark_return == pytest.approx(1.01 * 0.99 * 1.02 - 1)


def test_too_few_days_or_a_flat_benchmark_is_a_clear_error():
    with pytest.raises(PortfolioError, match="at least 3 periods with both returns, got 2"):
        beta_alpha([0.01, 0.02, 0.03], [0.01, 0.02, math.nan])
    with pytest.raises(PortfolioError, match="benchmark did not move"):
        beta_alpha([0.01, 0.02, 0.03], [0.0, 0.0, 0.0])
    with pytest.raises(PortfolioError, match="equal length"):
        beta_alpha([0.01, 0.02], [0.01])


def test_equal_weight_returns_average_the_assets_that_have_both_closes():
    closes = np.array([[100.0, 10.0, np.nan],
                       [110.0, 9.0, 50.0],     # +10%, -10%, (no previous close)
                       [110.0, 9.9, 55.0],     # 0, +10%, +10%
                       [np.nan, np.nan, np.nan]])
    r = equal_weight_returns(closes)
    assert r[0] == pytest.approx(0.0) and r[1] == pytest.approx(0.2 / 3) and math.isnan(r[2])
    assert equal_weight_returns(np.array([[100.0], [103.0]])) == pytest.approx([0.03])  # one asset: its return


def test_contributions_sum_to_the_book_return_and_order_by_size():
    parts = contributions({"sma": 300.0, "ml": -100.0, "rebal": 800.0}, capital=100_000)
    assert [c.name for c in parts] == ["rebal", "sma", "ml"]
    assert sum(c.contribution for c in parts) == pytest.approx(1000 / 100_000)
    assert {c.name: c.share for c in parts} == pytest.approx({"rebal": 0.8, "sma": 0.3, "ml": -0.1})
    assert math.isnan(contributions({"a": 5.0, "b": -5.0}, 100)[0].share)  # a zero total has no shares
    with pytest.raises(PortfolioError, match="capital"):
        contributions({"a": 1.0}, 0)
