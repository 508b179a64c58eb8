"""Constraint satisfaction, infeasibility naming the binding constraint, min-trade post-step, costs."""

from __future__ import annotations

import numpy as np
import pytest

from trading.portfolio import Constraints, Costs, optimize
from trading.portfolio.errors import ConstraintError, InfeasibleError
from trading.portfolio.rebalancing import breaches, needs_rebalance, trade_toward

from .conftest import random_problem

SYMS, _, COV, MU = random_problem(8, seed=11)
SECTORS = {s: ("L1" if i < 3 else "DeFi" if i < 6 else "Meme") for i, s in enumerate(SYMS)}
EQUAL = {s: 1 / 8 for s in SYMS}


def sector_weight(w, sector):
    return sum(x for s, x in zip(SYMS, w) if SECTORS[s] == sector)


@pytest.mark.parametrize("model", ["min_variance", "max_sharpe", "mean_variance"])
def test_long_only_bounds_sectors_turnover_hold(model):
    c = Constraints(upper=0.3, lower={SYMS[7]: 0.05}, sector_map=SECTORS, sector_caps={"L1": 0.3, "Meme": 0.2},
                    turnover=0.4)
    mu = np.abs(MU) + 0.01  # max Sharpe needs a portfolio above the risk-free rate
    sol = optimize(model, SYMS, COV, mu, constraints=c, current=EQUAL, risk_aversion=3)
    w = sol.weights
    assert w.sum() == pytest.approx(1, abs=1e-7)
    assert w.min() >= -1e-8 and w.max() <= 0.3 + 1e-7 and w[7] >= 0.05 - 1e-7
    assert sector_weight(w, "L1") <= 0.3 + 1e-7 and sector_weight(w, "Meme") <= 0.2 + 1e-7
    assert np.abs(w - 1 / 8).sum() <= 0.4 + 1e-6
    # without the caps the same problem breaks at least one of them: the constraints were doing work
    free = optimize(model, SYMS, COV, mu, constraints=Constraints(), risk_aversion=3)
    f = free.weights
    assert f.max() > 0.3 or sector_weight(f, "L1") > 0.3 or sector_weight(f, "Meme") > 0.2 or np.abs(f - 1 / 8).sum() > 0.4


def test_long_short_gross_and_net_leverage():
    c = Constraints(long_only=False, budget=None, net_range=(-0.2, 0.2), gross_leverage=1.5, lower=-0.5, upper=0.5)
    sol = optimize("mean_variance", SYMS, COV, MU * 5, constraints=c, risk_aversion=1)
    w = sol.weights
    assert np.abs(w).sum() <= 1.5 + 1e-6 and -0.2 - 1e-7 <= w.sum() <= 0.2 + 1e-7
    assert w.min() < -1e-3  # it really is short somewhere
    assert np.abs(w).sum() == pytest.approx(1.5, rel=1e-4)  # growth-hungry: the gross cap binds


@pytest.mark.parametrize("constraints,current,binding", [
    (Constraints(upper=0.1), None, ["bounds", "budget"]),
    (Constraints(sector_map=SECTORS, sector_caps={"L1": 0.1, "DeFi": 0.1, "Meme": 0.1}), None,
     ["budget", "sector_caps"]),
    (Constraints(lower={SYMS[0]: 0.5}, turnover=0.2), EQUAL, ["bounds", "turnover"]),
    (Constraints(long_only=False, lower=-1, gross_leverage=0.5), None, ["budget", "gross_leverage"]),
])
def test_infeasible_names_the_binding_constraint(constraints, current, binding):
    with pytest.raises(InfeasibleError) as err:
        optimize("min_variance", SYMS, COV, constraints=constraints, current=current)
    assert err.value.binding == binding and not err.value.jointly
    assert err.value.status == "infeasible"
    assert str(binding) in str(err.value)


def test_infeasible_target_return():
    with pytest.raises(InfeasibleError) as err:
        optimize("target_return", SYMS, COV, MU, target=float(MU.max()) + 0.1, constraints=Constraints(upper=0.5))
    assert "target_return" in err.value.binding


def test_inconsistent_constraints_are_refused_before_solving():
    with pytest.raises(ConstraintError, match=r"no sector but sector caps"):
        optimize("min_variance", SYMS, COV, constraints=Constraints(sector_map={SYMS[0]: "L1"}, sector_caps={"L1": 1}))
    with pytest.raises(ConstraintError, match="sector_caps.Gaming"):
        optimize("min_variance", SYMS, COV, constraints=Constraints(sector_map=SECTORS, sector_caps={"Gaming": 1}))
    with pytest.raises(ConstraintError, match="lower bound above upper"):
        optimize("min_variance", SYMS, COV, constraints=Constraints(lower=0.5, upper=0.2))
    with pytest.raises(ConstraintError, match="unknown symbol"):
        optimize("min_variance", SYMS, COV, current={"XYZ": 0.5})
    with pytest.raises(ConstraintError, match="turnover"):
        optimize("min_variance", SYMS, COV, constraints=Constraints(turnover=-1))


def test_min_trade_post_step_zeroes_small_trades_and_keeps_constraints():
    current = {s: w for s, w in zip(SYMS, np.random.default_rng(4).dirichlet(np.ones(8)))}
    c = Constraints(upper=0.35, sector_map=SECTORS, sector_caps={"L1": 0.45}, turnover=0.6)
    plain = optimize("min_variance", SYMS, COV, constraints=c, current=current)
    dw = np.abs(plain.weights - np.array(list(current.values())))
    min_trade = float(np.sort(dw[dw > 1e-6])[1]) + 1e-4  # at least two trades fall below it
    c_mt = Constraints(**{**c.as_dict(), "min_trade": min_trade})
    sol = optimize("min_variance", SYMS, COV, constraints=c_mt, current=current)
    dw = np.abs(sol.weights - np.array(list(current.values())))
    assert np.all((dw == 0) | (dw >= min_trade))
    assert len(sol.frozen) >= 2 and sol.diagnostics["solves"] >= 2
    w = sol.weights
    assert w.sum() == pytest.approx(1, abs=1e-7) and w.max() <= 0.35 + 1e-7 and w.min() >= -1e-8
    assert sector_weight(w, "L1") <= 0.45 + 1e-7 and dw.sum() <= 0.6 + 1e-6
    assert sol.expected_vol >= plain.expected_vol - 1e-9  # freezing costs risk, never gains it


def test_min_trade_that_cannot_be_met_is_named():
    # everything must move (bounds), but no trade may be that small: freezing conflicts with the bounds
    current = {s: 1 / 8 for s in SYMS}
    c = Constraints(upper={SYMS[0]: 0.1}, min_trade=0.5)
    with pytest.raises(InfeasibleError) as err:
        optimize("min_variance", SYMS, COV, constraints=c, current=current)
    assert "min_trade" in err.value.binding


def test_transaction_costs_create_a_no_trade_region():
    target = {s: w for s, w in zip(SYMS, np.random.default_rng(8).dirichlet(np.ones(8)))}
    free = trade_toward(SYMS, COV, target, EQUAL, Costs())
    assert np.allclose(free.weights, list(target.values()), atol=1e-5)
    stuck = trade_toward(SYMS, COV, target, EQUAL, Costs(fee=1.0))
    assert np.allclose(stuck.weights, 1 / 8)  # no trade is worth a 100% fee
    some = trade_toward(SYMS, COV, target, EQUAL, Costs(fee=0.002, impact=0.05))
    moved = np.abs(some.weights - 1 / 8).sum()
    assert 0 < moved < np.abs(np.array(list(target.values())) - 1 / 8).sum()
    assert some.weights.sum() == pytest.approx(1, abs=1e-6)
    # the mean-variance objective with costs trades less than without
    mv = optimize("mean_variance", SYMS, COV, MU, current=EQUAL, risk_aversion=20)
    mv_c = optimize("mean_variance", SYMS, COV, MU, current=EQUAL, risk_aversion=20, costs=Costs(fee=0.01, impact=0.1))
    assert np.abs(mv_c.weights - 1 / 8).sum() < np.abs(mv.weights - 1 / 8).sum()
    assert Costs(fee=0.01, impact=0.1).cost(np.array([0.04, -0.01])) == pytest.approx(0.01 * 0.05 + 0.1 * (0.008 + 0.001))


def test_drift_band_triggers():
    target = {"A": 0.5, "B": 0.3, "C": 0.2}
    current = {"A": 0.56, "B": 0.27, "C": 0.17}
    assert breaches(current, target, 0.05) == ["A"]
    assert not needs_rebalance(current, target, 0.07)
    assert breaches(current, target, 0.1, relative=True) == ["A", "C"]  # 0.06 > 0.05, 0.03 > 0.02
    assert breaches({"A": 0.5, "B": 0.3, "C": 0.2, "D": 0.01}, target, 0.005) == ["D"]  # held, not wanted


def test_violations_name_each_broken_constraint_and_pass_a_valid_solution():
    cons = Constraints(long_only=True, budget=1.0, upper=0.5, sector_map={"A": "x", "B": "x", "C": "y"},
                       sector_caps={"x": 0.6}, gross_leverage=1.0)
    assert cons.violations({"A": 0.3, "B": 0.3, "C": 0.4}) == []
    assert cons.violations({"A": 0.45, "B": 0.35, "C": 0.3}) == [
        "weights sum to 1.100000000, budget is 1.0",
        "sector x weight 0.800000000 above cap 0.6",
        "gross exposure 1.100000000 above 1.0"]
    assert cons.violations({"A": -0.1, "B": 0.6, "C": 0.5}) == [
        "A weight -0.100000000 outside [0.0, 0.5]", "B weight 0.600000000 outside [0.0, 0.5]",
        "gross exposure 1.200000000 above 1.0"]
    free = Constraints(long_only=False, budget=None, net_range=(0.0, 0.5))
    assert free.violations({"A": 0.4, "B": 0.3}) == ["weights sum to 0.700000000, outside the net range (0.0, 0.5)"]


def test_an_optimised_portfolio_has_no_violations():
    symbols, _, cov, mu = random_problem(12, seed=3)
    cons = Constraints(long_only=True, budget=1.0, upper=0.2)
    sol = optimize("mean_variance", symbols, cov, mu, constraints=cons, risk_aversion=2.0)
    assert cons.violations(dict(zip(sol.symbols, sol.weights))) == []
    assert Constraints(upper=0.05).violations(dict(zip(sol.symbols, sol.weights)))  # tighter: now broken
