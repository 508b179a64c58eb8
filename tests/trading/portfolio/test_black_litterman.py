from __future__ import annotations

import numpy as np
import pytest

from trading.portfolio import Constraints, View, black_litterman, optimize
from trading.portfolio.black_litterman import implied_returns, market_weights, omega, posterior, view_matrices
from trading.portfolio.errors import ModelError

from .conftest import random_problem

SYMS, _, COV, _ = random_problem(4, seed=21)
CAPS = {SYMS[0]: 500.0, SYMS[1]: 300.0, SYMS[2]: 150.0, SYMS[3]: 50.0}


def test_implied_prior_makes_the_market_portfolio_optimal():
    w = market_weights(SYMS, CAPS)
    assert np.allclose(w, [0.5, 0.3, 0.15, 0.05])
    pi = implied_returns(COV, w, 3.0)
    # unconstrained mean-variance (no budget) on pi with the same risk aversion gives w back
    sol = optimize("mean_variance", SYMS, COV, pi, risk_aversion=3.0, constraints=Constraints(long_only=False, budget=None))
    assert np.allclose(sol.weights, w, atol=1e-6)
    assert np.allclose(market_weights(SYMS), 0.25)


def test_posterior_matches_the_precision_form():
    views = [View(SYMS[0], 0.10, 0.6), View(SYMS[1], 0.02, 0.3, versus=SYMS[2])]
    P, Q, conf = view_matrices(views, SYMS)
    assert P.tolist() == [[1, 0, 0, 0], [0, 1, -1, 0]]
    tau = 0.05
    pi = implied_returns(COV, market_weights(SYMS, CAPS), 2.5)
    for method in ("tau", "idzorek"):
        om = omega(P, COV, tau, method, conf)
        mu, cov_post = posterior(pi, COV, P, Q, om, tau)
        # [(tS)^-1 + P' O^-1 P]^-1 [(tS)^-1 pi + P' O^-1 Q]  (the original Black-Litterman formula)
        a = np.linalg.inv(tau * COV)
        oi = np.linalg.inv(om)
        m = np.linalg.inv(a + P.T @ oi @ P)
        assert np.allclose(mu, m @ (a @ pi + P.T @ oi @ Q), rtol=1e-9)
        assert np.allclose(cov_post, COV + m, rtol=1e-9)
    # tau-scaled omega: each view as uncertain as the prior on it
    assert np.allclose(np.diag(omega(P, COV, tau, "tau")), tau * np.diag(P @ COV @ P.T))


def test_confidence_moves_the_posterior_towards_the_view():
    pi = implied_returns(COV, market_weights(SYMS), 2.5)
    q = float(pi[3]) + 0.2
    got = []
    for c in (0.01, 0.5, 0.99, 1.0):
        mu, _, prior = black_litterman(SYMS, COV, [View(SYMS[3], q, c)], risk_aversion=2.5)
        assert np.allclose(prior, pi)
        got.append(mu[3])
    assert pi[3] < got[0] < got[1] < got[2] < got[3]
    assert got[0] == pytest.approx(pi[3], abs=0.01) and got[3] == pytest.approx(q, rel=1e-9)  # c=1: the view exactly
    mu, cov_post, _ = black_litterman(SYMS, COV, [])
    assert np.allclose(mu, pi) and np.allclose(cov_post, COV * 1.05)


def test_bad_views():
    with pytest.raises(ModelError, match="unknown symbol 'XYZ'"):
        view_matrices([View("XYZ", 0.1)], SYMS)
    with pytest.raises(ModelError, match="confidence"):
        view_matrices([View(SYMS[0], 0.1, 0.0)], SYMS)
    with pytest.raises(ModelError, match="itself"):
        view_matrices([View(SYMS[0], 0.1, 0.5, versus=SYMS[0])], SYMS)
    with pytest.raises(ModelError, match="market caps missing"):
        market_weights(SYMS, {SYMS[0]: 1.0})
    with pytest.raises(ModelError, match="linearly dependent"):
        black_litterman(SYMS, COV, [View(SYMS[0], 0.1, 1.0), View(SYMS[0], 0.2, 1.0)])
