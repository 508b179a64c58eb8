"""VaR / CVaR against direct computations (np.percentile, closed-form normal), and the engine's
portfolio and per-strategy VaR, which fails closed on missing or stale data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from trading.risk import RiskDataError
from trading.risk.var import historical_var_cvar, var_cvar


@pytest.fixture
def scenarios():
    rng = np.random.default_rng(42)
    returns = rng.standard_t(5, size=(1000, 6)) * 0.01 + 0.0002
    exposures = rng.uniform(-1e4, 1e4, size=6)
    return returns, exposures


@pytest.mark.parametrize("confidence", [0.95, 0.99, 0.975])
def test_historical_matches_np_percentile(scenarios, confidence):
    returns, w = scenarios
    var, cvar = var_cvar(returns, w, "historical", confidence)
    losses = -(returns @ w)
    expected_var = np.percentile(losses, confidence * 100)
    assert var == pytest.approx(expected_var, rel=1e-12)
    assert cvar == pytest.approx(losses[losses >= expected_var].mean(), rel=1e-12)
    assert cvar >= var


def test_historical_horizon_uses_sqrt_time(scenarios):
    returns, w = scenarios
    v1, c1 = var_cvar(returns, w, "historical", 0.99, 1.0)
    v10, c10 = var_cvar(returns, w, "historical", 0.99, 10.0)
    assert v10 == pytest.approx(v1 * math.sqrt(10)) and c10 == pytest.approx(c1 * math.sqrt(10))


def test_many_portfolios_at_once_equal_one_by_one(scenarios):
    returns, w = scenarios
    many = np.column_stack([w, -w, w * 2, np.zeros_like(w)])
    v, c = var_cvar(returns, many, "historical", 0.99)
    for k in range(many.shape[1]):
        vk, ck = var_cvar(returns, many[:, k], "historical", 0.99)
        assert v[k] == pytest.approx(vk) and c[k] == pytest.approx(ck)


def test_parametric_matches_closed_form_normal(scenarios):
    returns, w = scenarios
    conf, horizon = 0.99, 5.0
    var, cvar = var_cvar(returns, w, "parametric", conf, horizon)
    mu = returns.mean(axis=0) @ w * horizon
    sigma = math.sqrt(w @ np.cov(returns, rowvar=False) @ w) * math.sqrt(horizon)
    assert var == pytest.approx(norm.ppf(conf) * sigma - mu, rel=1e-9)
    assert cvar == pytest.approx(sigma * norm.pdf(norm.ppf(conf)) / (1 - conf) - mu, rel=1e-9)


def test_monte_carlo_is_seeded_and_converges_to_parametric(scenarios):
    returns, w = scenarios
    a = var_cvar(returns, w, "monte_carlo", 0.99, 2.0, simulations=200_000, seed=1)
    b = var_cvar(returns, w, "monte_carlo", 0.99, 2.0, simulations=200_000, seed=1)
    c = var_cvar(returns, w, "monte_carlo", 0.99, 2.0, simulations=200_000, seed=2)
    assert a == b and a != c
    pv, pc = var_cvar(returns, w, "parametric", 0.99, 2.0)
    assert a[0] == pytest.approx(pv, rel=0.02) and a[1] == pytest.approx(pc, rel=0.03)


def test_bad_var_inputs():
    with pytest.raises(RiskDataError, match="confidence"):
        historical_var_cvar(np.zeros(10), 1.5)
    with pytest.raises(RiskDataError, match="shape"):
        var_cvar(np.zeros((10, 3)), np.zeros(4))
    with pytest.raises(RiskDataError, match="method"):
        var_cvar(np.zeros((10, 3)), np.zeros(3), "magic")


def test_engine_var_account_and_strategies(harness, scenarios):
    returns, _ = scenarios
    syms = [f"A{i}/USDT" for i in range(6)]
    h = harness(cash="1000000", prices={s: str(10 * (i + 1)) for i, s in enumerate(syms)})
    h.buy_position("100", "10", symbol=syms[0], strategy="x")
    h.buy_position("50", "30", symbol=syms[2], strategy="y", side="sell")
    h.buy_position("20", "30", symbol=syms[2], strategy="x")
    h.engine.set_scenarios(syms, returns)
    rep = h.engine.var("historical", confidence=0.99)
    e_x = np.zeros(6)
    e_x[0], e_x[2] = 100 * 10, 20 * 30
    e_y = np.zeros(6)
    e_y[2] = -50 * 30
    for exp, got in ((e_x + e_y, rep.account), (e_x, rep.strategies["x"]), (e_y, rep.strategies["y"])):
        losses = -(returns @ exp)
        assert got.var == pytest.approx(np.percentile(losses, 99))
    for method in ("parametric", "monte_carlo"):
        assert h.engine.var(method).account.var > 0
    m = h.engine.metrics()
    assert m["var"]["account"]["var"] == pytest.approx(h.engine.var().account.var)


def test_engine_var_fails_closed(harness, scenarios):
    returns, _ = scenarios
    h = harness({"breakers": {"stale_after_s": 30}}, cash="100000", prices={"A/USDT": "10", "B/USDT": "10"})
    with pytest.raises(RiskDataError, match="set_scenarios"):
        h.engine.var()
    h.buy_position("10", "10", symbol="A/USDT")
    h.buy_position("10", "10", symbol="B/USDT")
    h.engine.set_scenarios(["A/USDT"] + [f"Z{i}" for i in range(5)], returns)
    with pytest.raises(RiskDataError, match="B/USDT"):
        h.engine.var()
    h.engine.set_scenarios(["A/USDT", "B/USDT", "C", "D", "E", "F"], returns)
    h.clock.advance(31)
    h.price("A/USDT", "11")
    with pytest.raises(RiskDataError, match="no fresh valid price for B/USDT"):
        h.engine.var()
    assert "B/USDT" in h.engine.metrics()["var_error"]
    h.price("B/USDT", "11")
    assert h.engine.var().account.var > 0


def test_set_scenarios_validates(harness):
    h = harness()
    bad = np.ones((10, 2))
    bad[3, 1] = np.nan
    with pytest.raises(RiskDataError, match="Y"):
        h.engine.set_scenarios(["X", "Y"], bad)
    with pytest.raises(RiskDataError, match="shape"):
        h.engine.set_scenarios(["X"], np.ones((10, 2)))
    with pytest.raises(RiskDataError, match="unique"):
        h.engine.set_scenarios(["X", "X"], np.ones((10, 2)))

