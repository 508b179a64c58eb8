"""Each model against a known solution."""

from __future__ import annotations

import numpy as np
import pytest
from .conftest import random_problem

from trading.portfolio import Constraints, efficient_frontier, kelly, optimize, risk_contributions, risk_parity
from trading.portfolio.errors import InfeasibleError, ModelError

FREE = Constraints(long_only=False)  # budget 1, no bounds: the textbook closed forms apply


def test_min_variance_unconstrained_closed_form(problem6):
    syms, _, cov, _ = problem6
    expected = np.linalg.solve(cov, np.ones(6))
    expected /= expected.sum()
    for solver in ("CLARABEL", "OSQP"):
        sol = optimize("min_variance", syms, cov, constraints=FREE, solver=solver)
        assert sol.status == "optimal" and sol.solver == solver
        assert np.allclose(sol.weights, expected, atol=1e-6)
    assert sol.expected_vol == pytest.approx(np.sqrt(1 / (np.ones(6) @ np.linalg.solve(cov, np.ones(6)))), rel=1e-6)


def test_two_asset_long_only_min_variance():
    # w1 = (s2^2 - s12) / (s1^2 + s2^2 - 2 s12), clipped to [0, 1]
    s1, s2, rho = 0.2, 0.3, 0.4
    cov = np.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]])
    w1 = (s2**2 - cov[0, 1]) / (s1**2 + s2**2 - 2 * cov[0, 1])
    sol = optimize("min_variance", ["A", "B"], cov)
    assert np.allclose(sol.weights, [w1, 1 - w1], atol=1e-6)
    # rho so high that the unconstrained optimum shorts B: long-only clips at the corner
    rho = 0.95
    cov = np.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]])
    assert (s2**2 - cov[0, 1]) / (s1**2 + s2**2 - 2 * cov[0, 1]) > 1
    assert np.allclose(optimize("min_variance", ["A", "B"], cov).weights, [1, 0], atol=1e-6)


def test_max_sharpe_tangency_closed_form(problem6):
    syms, _, cov, mu = problem6
    rf = 0.01
    z = np.linalg.solve(cov, mu - rf)
    assert z.sum() > 0
    sol = optimize("max_sharpe", syms, cov, mu, constraints=FREE, risk_free=rf)
    assert np.allclose(sol.weights, z / z.sum(), atol=1e-5)
    # no other feasible long-only portfolio has a higher Sharpe ratio than the long-only max-Sharpe one
    lo = optimize("max_sharpe", syms, cov, mu, risk_free=rf)
    sharpe = (lo.expected_return - rf) / lo.expected_vol
    for w in np.random.default_rng(0).dirichlet(np.ones(6), 200):
        assert (mu @ w - rf) / np.sqrt(w @ cov @ w) <= sharpe + 1e-7


def test_max_sharpe_with_nothing_above_risk_free_is_named():
    syms, _, cov, _ = random_problem(3, seed=1)
    with pytest.raises(InfeasibleError, match="max_sharpe") as err:
        optimize("max_sharpe", syms, cov, np.array([-0.1, -0.2, -0.05]))
    assert err.value.binding == ["max_sharpe"]


def test_target_return_closed_form(problem6):
    syms, _, cov, mu = problem6
    inv = np.linalg.inv(cov)
    one = np.ones(6)
    a, b, c = one @ inv @ one, one @ inv @ mu, mu @ inv @ mu
    r = float(mu.max())
    lam, gam = (c - b * r) / (a * c - b * b), (a * r - b) / (a * c - b * b)
    expected = inv @ (lam * one + gam * mu)
    sol = optimize("target_return", syms, cov, mu, constraints=FREE, target=r)
    assert np.allclose(sol.weights, expected, atol=1e-5)
    assert sol.expected_return == pytest.approx(r, rel=1e-6)


def test_mean_variance_closed_form(problem6):
    # max mu'w - (d/2) w'Sw s.t. 1'w = 1  =>  w = inv(S)(mu - g 1)/d with g fixing the budget
    syms, _, cov, mu = problem6
    d = 4.0
    inv = np.linalg.inv(cov)
    one = np.ones(6)
    g = (one @ inv @ mu - d) / (one @ inv @ one)
    sol = optimize("mean_variance", syms, cov, mu, constraints=FREE, risk_aversion=d)
    assert np.allclose(sol.weights, inv @ (mu - g * one) / d, atol=1e-6)


def test_target_risk_hits_the_volatility_and_beats_min_variance(problem6):
    syms, _, cov, mu = problem6
    minvar = optimize("min_variance", syms, cov, mu)
    target = minvar.expected_vol * 1.3
    sol = optimize("target_risk", syms, cov, mu, target=target)
    assert sol.expected_vol <= target + 1e-6
    assert sol.expected_return >= minvar.expected_return
    with pytest.raises(InfeasibleError) as err:
        optimize("target_risk", syms, cov, mu, target=minvar.expected_vol * 0.5)
    # the portfolio w = 0 (no budget) or a short hedge (no bounds) would also meet the risk target
    assert err.value.binding == ["bounds", "budget", "target_risk"] and not err.value.jointly


def test_efficient_frontier_is_monotone(problem6):
    syms, _, cov, mu = problem6
    pts = efficient_frontier(syms, cov, mu, points=8)
    rets = [p.expected_return for p in pts]
    vols = [p.expected_vol for p in pts]
    assert len(pts) == 8 and np.all(np.diff(rets) > 0) and np.all(np.diff(vols) >= -1e-9)
    assert rets[-1] == pytest.approx(mu.max(), rel=1e-5)  # long-only max return: all in the best asset
    for p in pts:
        assert p.weights.min() >= -1e-8 and p.weights.sum() == pytest.approx(1)


def test_kelly_closed_form_fraction_and_leverage_cap(problem6):
    syms, _, cov, mu = problem6
    full = np.linalg.solve(cov, mu - 0.02)
    assert np.allclose(kelly(syms, cov, mu, risk_free=0.02).weights, full, atol=1e-6)
    assert np.allclose(kelly(syms, cov, mu, risk_free=0.02, fraction=0.25).weights, 0.25 * full, atol=1e-6)
    cap = 0.5 * np.abs(full).sum()
    capped = kelly(syms, cov, mu, risk_free=0.02, leverage_cap=cap)
    assert np.abs(capped.weights).sum() == pytest.approx(cap, rel=1e-6)
    # single asset: Kelly is (mu - r)/s^2, capped at the leverage cap
    one = kelly(["A"], np.array([[0.04]]), np.array([0.10]))
    assert one.weights[0] == pytest.approx(2.5, rel=1e-6)
    assert kelly(["A"], np.array([[0.04]]), np.array([0.10]), leverage_cap=1.5).weights[0] == pytest.approx(1.5, rel=1e-6)
    with pytest.raises(ModelError, match="fraction"):
        kelly(syms, cov, mu, fraction=1.5)


def test_risk_parity_equalises_contributions():
    syms, _, cov, _ = random_problem(5, seed=9)
    sol = risk_parity(syms, cov)
    assert np.allclose(risk_contributions(sol.weights, cov), 0.2, atol=1e-5)
    assert sol.weights.sum() == pytest.approx(1)
    # two assets: inverse-volatility weights, whatever the correlation
    cov2 = np.array([[0.04, 0.018], [0.018, 0.09]])
    assert np.allclose(risk_parity(["A", "B"], cov2).weights, [0.6, 0.4], atol=1e-5)
    budgeted = risk_parity(syms, cov, budgets=[2, 1, 1, 1, 1])
    assert np.allclose(risk_contributions(budgeted.weights, cov), [1 / 3] + [1 / 6] * 4, atol=1e-5)


def test_bad_model_inputs():
    syms, _, cov, mu = random_problem(3)
    with pytest.raises(ModelError, match="unknown model 'magic'"):
        optimize("magic", syms, cov, mu)
    with pytest.raises(ModelError, match="needs expected returns"):
        optimize("max_sharpe", syms, cov)
    with pytest.raises(ModelError, match="needs a finite target"):
        optimize("target_return", syms, cov, mu)
    with pytest.raises(ModelError, match="3x3"):
        optimize("min_variance", syms, cov[:2, :2])
    with pytest.raises(ModelError, match="positive semi-definite"):
        optimize("min_variance", ["A", "B"], np.array([[1.0, 2.0], [2.0, 1.0]]))
