"""allocate: the one place that chooses the optimisation model from its name and parameters."""

from __future__ import annotations

import numpy as np
import pytest

from trading.portfolio import Constraints, View, optimize, risk_parity
from trading.portfolio.allocation import ALL_MODELS, AllocationSpec, allocate
from trading.portfolio.covariance import estimate_cov, returns_from_prices
from trading.portfolio.errors import ModelError

from .conftest import random_problem


@pytest.fixture
def prices():
    symbols, returns, _, _ = random_problem(4, seed=5, periods=120)
    return symbols, 100.0 * np.cumprod(1.0 + returns, axis=0)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_every_model_gives_weights_that_meet_its_constraints(model, prices):
    symbols, px = prices
    extra = {"target": 0.10} if model == "target_return" else {"target": 0.15} if model == "target_risk" else {}
    spec = AllocationSpec(model=model, views=(View(symbols[0], 0.2, 0.6),), leverage_cap=1.5,
                          constraints=Constraints(long_only=model != "kelly"), **extra)
    sol, mu = allocate(spec, symbols, px, current={})
    assert sol.symbols == tuple(symbols) and mu.shape == (4,)
    weights = dict(zip(symbols, sol.weights))
    assert spec.solved_constraints().violations(weights, 1e-6) == []


def test_mean_variance_family_is_the_optimizer_on_the_estimated_inputs(prices):
    symbols, px = prices
    spec = AllocationSpec(model="min_variance", estimator="sample", periods_per_year=365)
    sol, mu = allocate(spec, symbols, px, current={})
    returns = returns_from_prices(px, symbols)
    cov = estimate_cov(returns, "sample") * 365
    assert np.allclose(sol.weights, optimize("min_variance", symbols, cov).weights, atol=1e-8)
    assert np.allclose(mu, returns.mean(axis=0) * 365)
    rp, _ = allocate(AllocationSpec(model="risk_parity", estimator="sample"), symbols, px, current={})
    assert np.allclose(rp.weights, risk_parity(symbols, cov).weights, atol=1e-8)
    assert rp.expected_return == pytest.approx(float(mu @ rp.weights))


def test_kelly_is_solved_without_budget_under_its_leverage_cap():
    spec = AllocationSpec(model="kelly", leverage_cap=2.0, constraints=Constraints(budget=1.0, gross_leverage=1.0))
    solved = spec.solved_constraints()
    assert solved.budget is None and solved.gross_leverage == 2.0
    assert AllocationSpec(model="min_variance").solved_constraints() == Constraints()


def test_unknown_model_and_risk_parity_with_bounds_are_refused(prices):
    symbols, px = prices
    with pytest.raises(ModelError, match="unknown model 'magic'; use one of"):
        allocate(AllocationSpec(model="magic"), symbols, px, current={})
    with pytest.raises(ModelError, match=r"risk_parity is long-only and takes no other constraints; remove \['upper'\]"):
        allocate(AllocationSpec(model="risk_parity", constraints=Constraints(upper=0.5)), symbols, px, current={})
    with pytest.raises(ModelError, match=r"remove \['long_only'\]"):
        allocate(AllocationSpec(model="risk_parity", constraints=Constraints(long_only=False)), symbols, px, current={})
